"""Writes of the integrations app, one module per job (console: the operator's buttons; opening: doors)."""
