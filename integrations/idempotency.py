"""Safe API retries: the `Idempotency-Key` request header (Stripe's semantics; IETF draft "The Idempotency-Key
HTTP Header Field").

The first request with a key runs its action and stores the answer (status and JSON body) with the key, the
user, the method and route, and a fingerprint of the body. The same key, user, route and body within
IDEMPOTENCY_KEY_TTL_SECONDS get that answer again (`Idempotent-Replayed: true`) and the action does not run;
the same key with another body or route gets 422. The key row is inserted in the same transaction as the
action, so a second request with the same new key waits on the unique index (user, key) until the first
commits, then replays it. Client errors (4xx other than 409, an open's refusal) are not stored, so a
corrected retry runs; 2xx and 409 are.

An adapter-level helper for the API views: it imports nothing of this app (models.py imports it, to register
the model), and services never import it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

if TYPE_CHECKING:
    from rest_framework.request import Request

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# 1-255 visible ASCII characters (no spaces, no control characters).
KEY_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
# How often a request whose key insert collided re-reads the winner's row before giving up.
_ATTEMPTS = 3


class IdempotencyKey(models.Model):
    """One key a user sent, with the request it came with and the answer that request got."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=MAX_KEY_LENGTH)
    # The method and route with its ids, e.g. "POST bookings/17/open".
    route = models.CharField(max_length=200)
    # SHA-256 (hex) of the request body: canonical JSON for a JSON body, the raw bytes otherwise.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    # The answer's body as JSON text (text, not a JSON column, so a replay renders the keys in the same order).
    response_body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        app_label = "integrations"
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created_idx")]

    def __str__(self) -> str:
        return f"Idempotency key {self.key!r} of user {self.user_id} ({self.route})"


# --- OpenAPI: what the views put in extend_schema ------------------------------------------------

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Optional; 1-255 visible ASCII characters (a UUID is a good choice). A retry with the same key and the "
        "same body within 24 h (by default) gets the first answer again, with the header "
        "`Idempotent-Replayed: true`, and nothing runs twice. The same key with another body or on another "
        "route is answered 422. Keys are per user. Answers 2xx and 409 are kept; other client errors are not, "
        "so a corrected retry runs."
    ),
)
IDEMPOTENCY_ERROR = inline_serializer(
    name="IdempotencyError", fields={"detail": serializers.CharField(), "code": serializers.CharField()}
)
IDEMPOTENCY_KEY_REUSED_RESPONSE = OpenApiResponse(
    IDEMPOTENCY_ERROR,
    description="The Idempotency-Key was already used with another body or route (code `idempotency_key_reused`).",
)


# --- the helper the views call --------------------------------------------------------------------


def respond_idempotently(
    request: Request,
    *,
    route: str,
    action: Callable[[], Response],
    render_after_commit: Callable[[Response], Response] | None = None,
) -> Response:
    """ACTION's response, run at most once per `Idempotency-Key` (ROUTE without the method, e.g.
    "bookings/17/open"); without the header, simply ACTION's response.

    With a key, ACTION runs inside the key's transaction, so what it leaves to on-commit callbacks (queueing a
    task, and noting on the row when the queue is down) happens after its answer was built. RENDER_AFTER_COMMIT
    builds that answer again once they ran; the stored answer, and so every replay, is the rebuilt one."""
    key = request.headers.get(HEADER)
    if key is None:
        return action()
    if not KEY_PATTERN.fullmatch(key):
        return Response(
            {
                "detail": f"The {HEADER} header must be 1-{MAX_KEY_LENGTH} visible ASCII characters "
                "(no spaces or control characters).",
                "code": "idempotency_key_invalid",
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    user_id = request.user.pk
    if user_id is None:  # keys are per user (the views authenticate before they get here)
        raise NotAuthenticated
    method_route = f"{request.method} {route}"
    fingerprint = request_fingerprint(request)
    for _ in range(_ATTEMPTS):
        stored = _stored(user_id=user_id, key=key, now=timezone.now())
        if stored is not None:
            return _replay(stored, route=method_route, fingerprint=fingerprint)
        response = _run_first(
            user_id=user_id,
            key=key,
            route=method_route,
            fingerprint=fingerprint,
            action=action,
            render_after_commit=render_after_commit,
        )
        if response is not None:
            return response
        # Another request with this key committed between our read and our insert: replay it (or 422).
    return Response(  # pragma: no cover - only if the winner's row vanished again and again
        {"detail": f"A request with this {HEADER} is in progress; retry shortly.", "code": "idempotency_key_in_use"},
        status=status.HTTP_409_CONFLICT,
    )


def request_fingerprint(request: Request) -> str:
    """SHA-256 of the body: canonical JSON (sorted keys, no spaces) for a JSON body, else the raw bytes.

    Read before anything parses the body (Django then keeps the bytes for DRF's parsers)."""
    try:
        raw: bytes = request._request.body
    except RawPostDataException:  # a multipart body already streamed by a parser: hash what it parsed
        raw = _canonical_json(request.data)
    else:
        if raw and _is_json(request.content_type or ""):
            with contextlib.suppress(ValueError):  # not JSON after all: the bytes as they came
                raw = _canonical_json(json.loads(raw))
    return hashlib.sha256(raw).hexdigest()


def idempotency_keys_purge(*, now: datetime) -> int:
    """Delete the keys older than IDEMPOTENCY_KEY_TTL_SECONDS at NOW; the number deleted (for a schedule)."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=_expired_before(now)).delete()
    return deleted


# --- internals ------------------------------------------------------------------------------------


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=JSONEncoder).encode()


def _expired_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)


def _stored(*, user_id: int, key: str, now: datetime) -> IdempotencyKey | None:
    """The user's live row for KEY; an expired one is deleted here (lazily) and counts as none."""
    row = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
    if row is not None and row.created_at <= _expired_before(now):
        IdempotencyKey.objects.filter(pk=row.pk).delete()
        return None
    return row


def _storable(status_code: int) -> bool:
    return 200 <= status_code < 300 or status_code == status.HTTP_409_CONFLICT


def _run_first(
    *,
    user_id: int,
    key: str,
    route: str,
    fingerprint: str,
    action: Callable[[], Response],
    render_after_commit: Callable[[Response], Response] | None = None,
) -> Response | None:
    """Insert the key, run ACTION and store its answer, all in one transaction; None if the key was taken.

    A concurrent request with the same key blocks on the unique index until this transaction ends: it then
    fails to insert (we committed: it replays) or inserts (we rolled back or stored nothing: it runs). An
    exception from ACTION rolls back the key with everything else."""
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint, so a collision leaves the transaction usable
                row = IdempotencyKey.objects.create(
                    user_id=user_id, key=key, route=route, fingerprint=fingerprint, status_code=0, response_body=""
                )
        except IntegrityError:
            return None
        response = action()
        answer = [response]
        if _storable(response.status_code):
            row.status_code = response.status_code
            row.response_body = json.dumps(response.data, cls=JSONEncoder)
            row.save(update_fields=["status_code", "response_body"])
            if render_after_commit is not None:
                # Registered after ACTION's own callbacks, so it runs after them. Should it fail, the answer
                # built inside the transaction stands (it is true, only less complete).
                transaction.on_commit(
                    lambda: answer.append(_store_rebuilt(row.pk, response, render_after_commit(response))), robust=True
                )
        else:
            row.delete()
    return answer[-1]


def _store_rebuilt(row_pk: int, first: Response, rebuilt: Response) -> Response:
    """The rebuilt answer, stored for replays; the first one if the status changed (a replay keeps its status)."""
    if rebuilt.status_code != first.status_code:
        return first
    IdempotencyKey.objects.filter(pk=row_pk).update(response_body=json.dumps(rebuilt.data, cls=JSONEncoder))
    return rebuilt


def _replay(row: IdempotencyKey, *, route: str, fingerprint: str) -> Response:
    if row.route != route or row.fingerprint != fingerprint:
        return Response(
            {
                "detail": f"This {HEADER} was already used for another request ({row.route}, or another body); "
                "use a new key for a new request.",
                "code": "idempotency_key_reused",
            },
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return Response(json.loads(row.response_body), status=row.status_code, headers={REPLAYED_HEADER: "true"})
