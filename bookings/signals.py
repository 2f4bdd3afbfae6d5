"""What the booking domain announces to other apps.

`booking_status_changed` is sent once per status change, after the transaction that made it has
committed (never on rollback), with `change`: the BookingStatusChange row. Receivers must not
assume they run inside a transaction.
"""

from django.dispatch import Signal

booking_status_changed = Signal()
