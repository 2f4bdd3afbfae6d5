"""The sandbox's HTTP surface: identity server, Connect API (v1.1 and v1.2) and the /_sandbox/ control surface.

Behaviour follows what docs/salto-ks.md (§1-§8) knows of the real API; where the real API is unknown the choice
is ours and listed in docs/salto-ks.md ("The sandbox").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locks.sandbox import odata
from locks.sandbox.page import render_page
from locks.sandbox.state import (
    ALLOWED_EXTRA_SCOPES,
    SCOPE_CONNECT,
    Account,
    Fault,
    SaltoFailure,
    SandboxState,
)

Handler = Callable[[Request], Awaitable[Response]]
RATE_LIMIT_TEXT = "API calls quota exceeded! maximum admitted 3 per 1m."


def salto_error(status: int, error_code: str, message: str) -> JSONResponse:
    return JSONResponse({"ErrorCode": error_code, "Message": message}, status_code=status)


def oauth_error(status: int, error: str, description: str | None = None) -> JSONResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _site_state(request: Request) -> SandboxState:
    """The state, once the {site_id} in the path is known (UUID only, like Salto: §4)."""
    state = _state(request)
    state.check_site(request.path_params["site_id"])
    return state


# --- identity ----------------------------------------------------------------------------------------------


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote(client_id.replace("+", " ")), unquote(client_secret.replace("+", " "))


async def token_endpoint(request: Request) -> Response:
    state = _state(request)
    raw = (await request.body()).decode("utf-8", errors="replace")
    form = {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}
    grant_type = form.get("grant_type", "")
    state.count_token_request(grant_type or "<none>")

    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return oauth_error(400, "invalid_request", "Content type must be application/x-www-form-urlencoded")
    credentials = _basic_credentials(request)
    if credentials is None and "client_id" in form:
        credentials = (form["client_id"], form.get("client_secret", ""))
    if credentials is None or not state.client_ok(*credentials):
        return oauth_error(401, "invalid_client")
    client_id = credentials[0]

    if grant_type == "password":
        requested = form.get("scope", "").split()
        if SCOPE_CONNECT not in requested or any(
            s != SCOPE_CONNECT and s not in ALLOWED_EXTRA_SCOPES for s in requested
        ):
            return oauth_error(400, "invalid_scope")
        account = state.account_for_login(form.get("username", ""), form.get("password", ""))
        if account is None:
            return oauth_error(400, "invalid_grant", "invalid_username_or_password")
        scope = " ".join(dict.fromkeys(requested))
        return JSONResponse(
            state.issue_token(username=account.username, client_id=client_id, scope=scope),
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )
    if grant_type == "refresh_token":
        token = state.redeem_refresh_token(form.get("refresh_token", ""), client_id)
        if token is None:
            return oauth_error(400, "invalid_grant")
        return JSONResponse(
            state.issue_token(username=token.username, client_id=client_id, scope=token.scope),
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )
    if not grant_type:
        return oauth_error(400, "invalid_request", "grant_type is missing")
    return oauth_error(400, "unsupported_grant_type")


async def openid_configuration(request: Request) -> Response:
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "issuer": base,
            "jwks_uri": f"{base}/.well-known/openid-configuration/jwks",
            "authorization_endpoint": f"{base}/connect/authorize",
            "token_endpoint": f"{base}/connect/token",
            "userinfo_endpoint": f"{base}/connect/userinfo",
            "scopes_supported": ["openid", "profile", "offline_access", SCOPE_CONNECT],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token", "password"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    )


# --- API helpers -------------------------------------------------------------------------------------------


def api(handler: Callable[[Request, Account], Awaitable[Response]]) -> Handler:
    """Bearer authentication (401, empty body, WWW-Authenticate) and Salto's error body for SaltoFailure."""

    async def wrapped(request: Request) -> Response:
        state = _state(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        account = state.account_for_token(token.strip())
        if account is None:
            return Response(
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token", error_description="The token expired"'},
            )
        try:
            return await handler(request, account)
        except SaltoFailure as failure:
            return salto_error(failure.status, failure.error_code, failure.message)
        except odata.ODataError as exc:
            return salto_error(400, "1102", f"The query specified in the URI is not valid. {exc}")

    return wrapped


def _version(request: Request) -> str:
    return "v1.2" if request.url.path.startswith("/v1.2/") else "v1.1"


def paged(request: Request, items: list[dict[str, Any]], *, page_size: int) -> JSONResponse:
    """OData options, then the {items, next_page_link, count} envelope with an absolute next link."""
    params = request.query_params
    items = odata.apply_filter(items, params.get("$filter"))
    items = odata.apply_orderby(items, params.get("$orderby"))
    skip = odata.parse_int(params.get("$skip"), name="$skip", default=0)
    top = min(odata.parse_int(params.get("$top"), name="$top", default=page_size), page_size) or page_size
    page = items[skip : skip + top]
    next_link = None
    if skip + top < len(items):
        query = {k: v for k, v in params.items() if k not in ("$skip", "$top")}
        query.update({"$skip": str(skip + top), "$top": str(top)})
        next_link = str(request.url.replace(query=urlencode(query, safe="$")))
    count = len(items) if params.get("$inlinecount") == "allpages" else None
    return JSONResponse({"items": page, "next_page_link": next_link, "count": count})


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaltoFailure(400, "1100", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise SaltoFailure(400, "1100", "The request body must be a JSON object.")
    return body


# --- API handlers ------------------------------------------------------------------------------------------


@api
async def me(request: Request, account: Account) -> Response:
    return JSONResponse(_state(request).me_json(account))


@api
async def list_sites(request: Request, account: Account) -> Response:
    state = _state(request)
    sites = odata.apply_filter([state.site_json()], request.query_params.get("$filter"))
    if _version(request) == "v1.2":
        # Observed once: /v1.2/sites answers with a bare array (API doc §3.2); clients must accept both.
        return JSONResponse(sites)
    return JSONResponse({"items": sites, "next_page_link": None, "count": None})


@api
async def get_site(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return JSONResponse(state.site_json())


@api
async def list_iqs(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return paged(request, state.iqs_json(), page_size=state.config.page_size)


@api
async def get_iq(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return JSONResponse(state.iq_json(request.path_params["iq_id"]))


@api
async def list_locks(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return paged(request, state.locks_json(), page_size=state.config.page_size)


@api
async def get_lock(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return JSONResponse(state.lock_json(request.path_params["lock_id"]))


@api
async def iq_secret(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return JSONResponse({"secret": state.get_secret(account, request.path_params["iq_id"])})


@api
async def iq_pin(request: Request, account: Account) -> Response:
    state = _site_state(request)
    iq_id = request.path_params["iq_id"]
    if request.method == "PUT":
        body = await _json_body(request)
        otp, delta = body.get("otp"), body.get("delta")
        state.set_pin(
            account,
            iq_id,
            otp=str(otp) if otp is not None else None,
            delta=str(delta) if delta is not None else None,
        )
        return Response(status_code=204)
    send_email = request.query_params.get("send_email", "").lower() == "true"
    pin = state.request_pin(account, iq_id, send_email=send_email)
    if pin is None:
        return Response(status_code=204)
    return JSONResponse({"pin": pin})


@api
async def activated_iqs(request: Request, account: Account) -> Response:
    state = _site_state(request)
    return JSONResponse({"items": state.activated_iqs(account), "next_page_link": None, "count": None})


@api
async def locking(request: Request, account: Account) -> Response:
    state = _site_state(request)
    body = await _json_body(request)
    state.operate_lock(
        account, request.path_params["lock_id"], locked_state=body.get("locked_state"), otp=body.get("otp")
    )
    # The real response body is undocumented; an empty 200 keeps clients from depending on one.
    return Response(status_code=200)


@api
async def entries(request: Request, account: Account) -> Response:
    state = _state(request)
    if _version(request) != "v1.1":
        # Observed: entries exist on v1.1 only; /v1.2/sites/{id}/entries → 405 (API doc §3.1).
        return Response(status_code=405, headers={"Allow": ""})
    state.check_site(request.path_params["site_id"])
    params = request.query_params
    items = odata.apply_filter(state.entries_json(), params.get("$filter"))
    items = odata.apply_orderby(items, params.get("$orderby") or "utc_date_time desc")
    top = odata.parse_int(params.get("$top"), name="$top", default=50) or 50
    token = params.get("continuation_token") or request.headers.get("clp-continuation-token") or "0"
    start = odata.parse_int(token, name="continuation_token", default=0)
    page = items[start : start + top]
    more = start + top < len(items)
    return JSONResponse({"items": page, "continuation_token": str(start + top) if more else None})


# --- control surface ---------------------------------------------------------------------------------------


async def _control_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def control(handler: Callable[[Request, dict[str, Any]], Awaitable[Response]]) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            body = await _control_body(request) if request.method in ("POST", "PUT", "DELETE") else {}
            return await handler(request, body)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except SaltoFailure as failure:
            return JSONResponse({"error": failure.message}, status_code=failure.status)

    return wrapped


@control
async def control_reset(request: Request, body: dict[str, Any]) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


@control
async def control_faults(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    if request.method == "DELETE":
        state.clear_faults()
        return JSONResponse({"faults": []})
    if request.method == "GET":
        return JSONResponse({"faults": state.faults()})
    allowed = set(Fault.__dataclass_fields__) - {"served"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    fault = Fault(**body)
    if fault.status is None and not fault.drop_connection and not fault.delay_seconds:
        raise ValueError("a fault needs status, drop_connection or delay_seconds")
    flags = (fault.after_acting, fault.drop_connection, fault.act_late)
    if not all(isinstance(flag, bool) for flag in flags):
        raise ValueError("after_acting, drop_connection and act_late must be true or false")
    if fault.act_late and (fault.after_acting or not fault.delay_seconds or fault.status or fault.drop_connection):
        raise ValueError("act_late needs delay_seconds and no after_acting, status or drop_connection")
    if fault.status is not None:
        status = int(fault.status)
        if 200 <= status <= 299:
            if fault.body is None:
                raise ValueError("a 2xx fault needs a body (what the client gets instead of the real answer)")
        elif not 400 <= status <= 599:
            raise ValueError("status must be 4xx or 5xx, or 2xx with a body")
    state.add_fault(fault)
    return JSONResponse({"fault": fault.as_dict(), "faults": state.faults()}, status_code=201)


@control
async def control_iq_pin(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    kwargs: dict[str, Any] = {"pin": body.get("pin")}
    if body.get("username"):
        kwargs["username"] = body["username"]
    pin = state.change_pin_outside(request.path_params["iq_id"], **kwargs)
    return JSONResponse({"iq_id": request.path_params["iq_id"], "pin": pin})


@control
async def control_iq_reset(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    iq_id = request.path_params["iq_id"]
    if body.get("username"):
        state.reset_iq_user(iq_id, username=body["username"])
    else:
        state.reset_iq_user(iq_id)
    return JSONResponse({"iq_id": iq_id, "reset": True})


@control
async def control_iq_activation(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    iq_id = request.path_params["iq_id"]
    result = state.activate(iq_id, username=body["username"]) if body.get("username") else state.activate(iq_id)
    return JSONResponse({"iq_id": iq_id, **result})


def _online_flag(body: dict[str, Any]) -> bool:
    online = body.get("online")
    if not isinstance(online, bool):
        raise ValueError('body must be {"online": true|false}')
    return online


@control
async def control_lock_online(request: Request, body: dict[str, Any]) -> Response:
    online = _online_flag(body)
    _state(request).set_lock_online(request.path_params["lock_id"], online)
    return JSONResponse({"lock_id": request.path_params["lock_id"], "online": online})


@control
async def control_iq_online(request: Request, body: dict[str, Any]) -> Response:
    online = _online_flag(body)
    _state(request).set_iq_online(request.path_params["iq_id"], online)
    return JSONResponse({"iq_id": request.path_params["iq_id"], "online": online})


@control
async def control_config(request: Request, body: dict[str, Any]) -> Response:
    state = _state(request)
    config = state.configure(**body) if body else state.config
    return JSONResponse(vars(config).copy())


@control
async def control_expire_tokens(request: Request, body: dict[str, Any]) -> Response:
    return JSONResponse({"expired": _state(request).expire_tokens()})


@control
async def control_opens(request: Request, body: dict[str, Any]) -> Response:
    return JSONResponse(_state(request).opens())


@control
async def control_token_requests(request: Request, body: dict[str, Any]) -> Response:
    return JSONResponse(_state(request).token_request_count())


@control
async def control_requests(request: Request, body: dict[str, Any]) -> Response:
    return JSONResponse({"requests": _state(request).requests()})


@control
async def control_state(request: Request, body: dict[str, Any]) -> Response:
    return JSONResponse(_state(request).summary())


async def control_page(request: Request) -> Response:
    return HTMLResponse(render_page(_state(request).summary()))


# --- faults: an outer ASGI layer, so it can delay, answer or drop before (or after) any route runs -------------


def http_date(value: datetime) -> str:
    """RFC 7231 IMF-fixdate, as in a Date header: `Tue, 01 Dec 2026 21:50:00 GMT`."""
    return format_datetime(value.astimezone(UTC), usegmt=True)


class FaultInjection:
    """The outermost layer: injected faults, the request log, and a Date header from the sandbox's clock on every
    answer (uvicorn's own Date header is switched off in server.py, so the product sees the sandbox's time)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return None
        send = self._dated(send)
        path: str = scope["path"]
        method: str = scope["method"]
        recorded = path.startswith("/_sandbox")

        async def recording_send(message: Message) -> None:
            # Record before the client can see the answer, so a test reading the log right after sees it.
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.state.record_request(method, path, int(message["status"]))
            await send(message)

        fault = None if path.startswith("/_sandbox") else self.state.take_fault(method, path)
        if fault is None:
            await self.app(scope, receive, recording_send)
            return None
        if fault.act_late:
            await self._act_late(fault, scope, receive, recording_send)
            return None
        if fault.after_acting:
            # The handler acts (the door opens, the open and its entry are recorded); its answer is held back.
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.drop_connection:
            self.state.record_request(method, path, 0)
            # uvicorn closes the transport without writing a byte when an ASGI app returns a non-None value
            # before starting a response; the client sees "server disconnected without sending a response".
            return "sandbox fault: drop_connection (closing without a response)"
        if fault.status is not None:
            response = self._fault_response(fault)
            self.state.record_request(method, path, fault.status)
            await response(scope, receive, send)
            return None
        if fault.after_acting:
            for message in held:
                await recording_send(message)
            return None
        await self.app(scope, receive, recording_send)
        return None

    async def _act_late(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Take the request in now, act on it after the delay even if the client has gone (its answer is lost)."""
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await asyncio.sleep(fault.delay_seconds)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # never a disconnect: the request is already Salto's
            raise AssertionError("unreachable")

        async def to_the_client_if_still_there(message: Message) -> None:
            with contextlib.suppress(Exception):
                await send(message)

        await self.app(scope, replay, to_the_client_if_still_there)

    def _dated(self, send: Send) -> Send:
        async def dated_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                headers.append((b"date", http_date(self.state.now()).encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        return dated_send

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        status = int(fault.status or 500)
        headers = {}
        if fault.retry_after is not None:
            value = fault.retry_after
            if isinstance(value, str):
                headers["Retry-After"] = value  # an HTTP date, or anything a test wants the client to read
            else:
                headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
        if fault.body is not None:
            return PlainTextResponse(fault.body, status_code=status, headers=headers, media_type=fault.content_type)
        if status == 429:
            # The plain-text body observed from Salto's rate limiter (API doc §3.4).
            return PlainTextResponse(RATE_LIMIT_TEXT, status_code=status, headers=headers)
        return PlainTextResponse(
            "Service Unavailable" if status == 503 else "Error", status_code=status, headers=headers
        )


# --- app -----------------------------------------------------------------------------------------------------


def _api_routes() -> list[BaseRoute]:
    site = "/sites/{site_id}"
    return [
        Route("/me", me),
        Route("/sites", list_sites),
        Route(site, get_site),
        Route(f"{site}/iqs", list_iqs),
        Route(f"{site}/iqs/{{iq_id}}", get_iq),
        Route(f"{site}/iqs/{{iq_id}}/secret", iq_secret),
        Route(f"{site}/iqs/{{iq_id}}/pin", iq_pin, methods=["GET", "PUT"]),
        Route(f"{site}/locks", list_locks),
        Route(f"{site}/locks/{{lock_id}}", get_lock),
        Route(f"{site}/locks/{{lock_id}}/locking", locking, methods=["PATCH"]),
        Route(f"{site}/entries", entries),
        Route("/me/{site_id}/activated_iqs", activated_iqs),
    ]


def create_app(state: SandboxState | None = None) -> ASGIApp:
    """The whole sandbox as one ASGI app (identity and API share a base URL)."""
    state = state or SandboxState()
    control_prefix = "/_sandbox"
    routes: list[BaseRoute] = [
        Route("/connect/token", token_endpoint, methods=["POST"]),
        Route("/.well-known/openid-configuration", openid_configuration),
        Mount("/v1.1", routes=_api_routes()),
        Mount("/v1.2", routes=_api_routes()),
        Route(f"{control_prefix}/", control_page),
        Route(f"{control_prefix}/reset", control_reset, methods=["POST"]),
        Route(f"{control_prefix}/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{control_prefix}/config", control_config, methods=["GET", "POST"]),
        Route(f"{control_prefix}/tokens/expire", control_expire_tokens, methods=["POST"]),
        Route(f"{control_prefix}/iqs/{{iq_id}}/pin", control_iq_pin, methods=["POST"]),
        Route(f"{control_prefix}/iqs/{{iq_id}}/reset", control_iq_reset, methods=["POST"]),
        Route(f"{control_prefix}/iqs/{{iq_id}}/activation", control_iq_activation, methods=["POST"]),
        Route(f"{control_prefix}/iqs/{{iq_id}}/online", control_iq_online, methods=["POST"]),
        Route(f"{control_prefix}/locks/{{lock_id}}/online", control_lock_online, methods=["POST"]),
        Route(f"{control_prefix}/opens", control_opens),
        Route(f"{control_prefix}/token-requests", control_token_requests),
        Route(f"{control_prefix}/requests", control_requests),
        Route(f"{control_prefix}/state", control_state),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return FaultInjection(app, state)
