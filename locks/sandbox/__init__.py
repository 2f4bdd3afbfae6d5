"""A faithful fake of Salto KS (identity server and Connect API) for tests and for trying the console by hand.

See docs/salto-ks.md ("The sandbox") and docs/dev-contracts.md.
"""

from __future__ import annotations

from locks.sandbox.app import create_app
from locks.sandbox.server import RunningSandbox, start_sandbox_in_thread
from locks.sandbox.state import Fault, SandboxConfig, SandboxState

__all__ = ["Fault", "RunningSandbox", "SandboxConfig", "SandboxState", "create_app", "start_sandbox_in_thread"]
