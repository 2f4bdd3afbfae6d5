"""Demo data of the Salto KS sandbox: one account, one released site, two IQs, eight locks.

These constants are the interface others rely on (docs/dev-contracts.md): tests, the console's e2e runs and
a person trying the console by hand all enter exactly these values.
"""

from __future__ import annotations

from dataclasses import dataclass

# The platform's OAuth client at the identity server (SALTO_KS_CLIENT_ID / SALTO_KS_CLIENT_SECRET).
DEMO_CLIENT_ID = "ireserve-sandbox-client"
DEMO_CLIENT_SECRET = "sandbox-client-secret"

# The customer's Salto KS account (a "system user" of the site).
DEMO_USERNAME = "doors@sandbox.example.com"
DEMO_PASSWORD = "sandbox-password"
DEMO_USER_ID = "5f0c8a3e-2b7d-4c19-9e61-0a4d2c7b9f10"
DEMO_FIRST_NAME = "Sandbox"
DEMO_LAST_NAME = "Doors"

DEMO_SITE_UID = "NL6254340082"
DEMO_SITE_ID = "8d2f4c1a-6e3b-4a57-9b0d-1c5e7f2a3b64"
DEMO_SITE_NAME = "Sandbox Studios Amsterdam"
DEMO_TIME_ZONE = "Europe/Amsterdam"

DEMO_IQ_ID = "1c0a7e52-9d34-4b8f-a6e1-3f2b5c8d0e71"
DEMO_IQ_NAME = "IQ Reception"
DEMO_IQ2_ID = "2d1b8f63-ae45-4c90-b7f2-4a3c6d9e1f82"
DEMO_IQ2_NAME = "IQ Garage"

# Every (account, IQ) starts with this IQ PIN; GET .../iqs/{iq}/pin hands it out.
DEMO_INITIAL_PIN = "1234"

LOCK_FRONT_DOOR_ID = "a1000000-0000-4000-8000-000000000001"
LOCK_STUDIO_1_ID = "a1000000-0000-4000-8000-000000000002"
LOCK_STUDIO_2_ID = "a1000000-0000-4000-8000-000000000003"
LOCK_STUDIO_3_ID = "a1000000-0000-4000-8000-000000000004"
LOCK_MEETING_ROOM_A_ID = "a1000000-0000-4000-8000-000000000005"
LOCK_MEETING_ROOM_B_ID = "a1000000-0000-4000-8000-000000000006"
LOCK_STORAGE_ID = "a1000000-0000-4000-8000-000000000007"
LOCK_GARAGE_ID = "a1000000-0000-4000-8000-000000000008"

# Lists are paged by this many items, so a client must follow next_page_link (8 locks → 3 pages).
DEMO_PAGE_SIZE = 3


@dataclass(frozen=True)
class DemoIQ:
    id: str
    name: str
    mac: str
    online: bool = True
    otp_enabled: bool = True


@dataclass(frozen=True)
class DemoLock:
    id: str
    name: str
    iq_id: str
    mac: str
    online: bool = True


DEMO_IQS: tuple[DemoIQ, ...] = (
    DemoIQ(DEMO_IQ_ID, DEMO_IQ_NAME, "3B.9E.05"),
    DemoIQ(DEMO_IQ2_ID, DEMO_IQ2_NAME, "3B.9E.06"),
)

DEMO_LOCKS: tuple[DemoLock, ...] = (
    DemoLock(LOCK_FRONT_DOOR_ID, "Front door", DEMO_IQ_ID, "2D.EA.01"),
    DemoLock(LOCK_STUDIO_1_ID, "Studio 1", DEMO_IQ_ID, "2D.EA.02"),
    DemoLock(LOCK_STUDIO_2_ID, "Studio 2", DEMO_IQ_ID, "2D.EA.03"),
    DemoLock(LOCK_STUDIO_3_ID, "Studio 3", DEMO_IQ_ID, "2D.EA.04"),
    DemoLock(LOCK_MEETING_ROOM_A_ID, "Meeting room A", DEMO_IQ_ID, "2D.EA.05"),
    DemoLock(LOCK_MEETING_ROOM_B_ID, "Meeting room B", DEMO_IQ_ID, "2D.EA.06"),
    DemoLock(LOCK_STORAGE_ID, "Storage", DEMO_IQ_ID, "2D.EA.07", online=False),
    DemoLock(LOCK_GARAGE_ID, "Garage", DEMO_IQ2_ID, "2D.EA.08"),
)

DEMO_LOCK_IDS: dict[str, str] = {lock.name: lock.id for lock in DEMO_LOCKS}
