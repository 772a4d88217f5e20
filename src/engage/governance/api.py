"""The governance REST API (FastAPI): review queue, data-subject rights, audit trail, legal holds, tokens.

Every route but ``/healthz`` takes ``Authorization: Bearer <token>`` (``engage token create``); what each
role may do is the one table :data:`PERMISSIONS`, and every route names its permission when it is added
(:func:`create_app` refuses a route without one, and the tests walk the table cell by cell).

Answers: ``{"error": message}`` for every refusal (one handler maps :class:`~engage.errors.EngageError`
to its ``http_status``): 401 without a valid token (with ``WWW-Authenticate: Bearer``), 403 for a role
without the right, 404 unknown, 409 a review item someone decided first, 413 a body over the limit, 422
a body that is not what the route takes, 503 the database is down (nothing was written).

Nothing a request names (customer ids, reasons) is logged: the access log line holds the route's
template, not its path, and uvicorn's own access log is off (``engage governance serve``).

This module imports FastAPI (the ``api`` extra); nothing else in ``engage`` imports it at module level.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from engage.errors import EngageError, GovernanceError

from ._audit import AuditTrail
from ._db import Database, open_database
from ._review import ReviewQueue
from ._subjects import CustomerRecords, SubjectRights
from ._tokens import ROLES, TokenInfo, Tokens

__all__ = ["MAX_BODY_BYTES", "PERMISSIONS", "create_app"]

_LOG = logging.getLogger("engage.governance.api")

#: THE role matrix: permission -> the roles that have it (admin has every one)
PERMISSIONS: dict[str, frozenset[str]] = {
    "review.read": frozenset({"reviewer", "auditor", "admin"}),
    "review.decide": frozenset({"reviewer", "admin"}),
    "subject.access": frozenset({"auditor", "admin"}),
    "subject.delete": frozenset({"admin"}),
    "subject.opt_out": frozenset({"admin"}),
    "audit.read": frozenset({"auditor", "admin"}),
    "audit.verify": frozenset({"auditor", "admin"}),
    "holds.manage": frozenset({"admin"}),
    "tokens.manage": frozenset({"admin"}),
}
#: routes anyone may call (no data)
PUBLIC = frozenset({("GET", "/healthz")})
MAX_BODY_BYTES = 1 << 20
_LIST_MAX = 1000
#: the largest integer a database column holds (SQLite and PostgreSQL BIGINT): past it a 422, not a 500
_INT64_MAX = 2**63 - 1
_BEARER = {"WWW-Authenticate": "Bearer"}


# --- request bodies ----------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionBody(_Body):
    decision: Literal["approve", "override"]
    reason: str = Field(min_length=1, max_length=2000)
    override: dict[str, Any] | None = None
    expected_version: int | None = Field(default=None, ge=1, le=_INT64_MAX)


class ReasonBody(_Body):
    reason: str = Field(min_length=1, max_length=2000)


class HoldBody(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    subject: str | None = Field(default=None, min_length=1, max_length=256)
    since: datetime | None = None
    until: datetime | None = None


class TokenBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    role: Literal["reviewer", "admin", "auditor"]
    ttl_days: int | None = Field(default=None, ge=1, le=3650)


# --- the app -----------------------------------------------------------------------------------------------


def _caller(request: Request) -> TokenInfo:
    """The verified token of the request (the route's permission check ran first and kept it)."""
    info: TokenInfo = request.state.token
    return info


Caller = Annotated[TokenInfo, Depends(_caller)]


class _Store:
    """The database, opened (and migrated) on first use and again after a failure: a server started
    while its database is down answers 503 until the database is back, then serves."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._db: Database | None = None
        self._lock = threading.Lock()

    def db(self) -> Database:
        with self._lock:
            if self._db is None:
                self._db = open_database(self.url)
            return self._db


def create_app(
    db_url: str | None = None,
    *,
    table: str | Path | None = None,
    contract: str | Path | None = None,
    registry: CustomerRecords | None = None,
    runs: CustomerRecords | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The governance API on the database at ``db_url`` (default: ``ENGAGE_GOVERNANCE_DATABASE_URL``).

    ``table`` + ``contract`` (a customer table and its contract), ``registry`` and ``runs`` (the pipeline
    run outputs, :class:`~engage.governance.RunOutputs`) are what a subject access export searches
    besides the database, and ``registry`` and ``runs`` what an erasure erases besides it; they are the
    server's configuration, never a request's (a caller cannot make the server read a file of its
    choosing).
    """
    store = _Store(db_url)
    loaded_contract = None
    if contract is not None:
        from engage.contract import load_contract

        loaded_contract = load_contract(contract)
    if (table is None) != (loaded_contract is None):
        raise GovernanceError("the API's customer table needs its contract, and a contract its table")

    def open_registry() -> CustomerRecords | None:
        return registry

    app = FastAPI(
        title="Engage governance API",
        version="1",
        description="Human review, data-subject rights, the audit trail, legal holds, API tokens.",
        # every route but /healthz takes a token: no unauthenticated schema or docs pages either
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.permissions = {}

    # --- errors: one handler per kind, one body shape ------------------------------------------------------

    @app.exception_handler(EngageError)
    async def _engage_error(_request: Request, error: EngageError) -> JSONResponse:
        status = error.http_status
        headers = _BEARER if status == 401 else None
        if status >= 500:
            _LOG.error("%s", error.message)
        return JSONResponse({"error": error.message}, status_code=status, headers=headers)

    async def _unauthorized(request: Request) -> JSONResponse | None:
        """FastAPI reads and validates a body before the route's dependencies run: without a valid token
        the answer is still 401 / 403, never a description of what the route takes."""
        matched = request.scope.get("route")
        permission = app.state.permissions.get((request.method, getattr(matched, "path", "")))
        if permission is not None:
            try:
                authorize(permission)(request)
            except EngageError as e:
                return await _engage_error(request, e)
        return None

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        refused = await _unauthorized(request)
        if refused is not None:
            return refused
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "error": e.get("msg", "")}
            for e in error.errors()
        ]
        return JSONResponse({"error": "the request is not what this route takes", "details": details}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # a body that does not parse (400) is a route's refusal too: the token is checked first
        refused = await _unauthorized(request) if error.status_code == 400 else None
        if refused is not None:
            return refused
        return JSONResponse({"error": str(error.detail)}, error.status_code, headers=error.headers)

    # --- authentication and the role check -------------------------------------------------------------

    def authorize(permission: str) -> Callable[[Request], TokenInfo]:
        roles = PERMISSIONS[permission]

        def check(request: Request) -> TokenInfo:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise GovernanceError(
                    "authentication required: send Authorization: Bearer <token>", http_status=401
                )
            info = Tokens(store.db()).verify(token.strip())
            if info.role not in roles:
                raise GovernanceError(
                    f"role {info.role} may not {permission} (it needs one of: {', '.join(sorted(roles))})",
                    http_status=403,
                )
            request.state.token = info
            return info

        return check

    def route(method: str, path: str, permission: str | None, **kwargs: Any) -> Callable[..., Any]:
        """Add a route with its permission (None: public); the permission table learns it."""
        if permission is None and (method, path) not in PUBLIC:
            raise AssertionError(f"{method} {path}: every route but {sorted(PUBLIC)} needs a permission")
        if permission is not None and permission not in PERMISSIONS:
            raise AssertionError(f"{method} {path}: unknown permission {permission!r}")
        app.state.permissions[(method, path)] = permission
        dependencies = [] if permission is None else [Depends(authorize(permission))]
        return app.api_route(path, methods=[method], dependencies=dependencies, **kwargs)

    # --- routes ----------------------------------------------------------------------------------------

    @route("GET", "/healthz", None)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @route("GET", "/v1/review", "review.read")
    def review_list(
        status: Literal["pending", "approved", "overridden", "all"] = "pending",
        limit: Annotated[int, Query(ge=1, le=_LIST_MAX)] = 100,
        offset: Annotated[int, Query(ge=0, le=_INT64_MAX)] = 0,
    ) -> dict[str, Any]:
        queue = ReviewQueue(store.db())
        items = queue.list(status=None if status == "all" else status, limit=limit, offset=offset)
        return {"items": [i.to_json() for i in items]}

    @route("GET", "/v1/review/{item_id}", "review.read")
    def review_get(item_id: str) -> dict[str, Any]:
        return ReviewQueue(store.db()).get(item_id).to_json()

    @route("POST", "/v1/review/{item_id}/decision", "review.decide")
    def review_decide(item_id: str, body: DecisionBody, who: Caller) -> dict[str, Any]:
        view = ReviewQueue(store.db()).decide(
            item_id,
            reviewer=who.actor,
            decision=body.decision,
            reason=body.reason,
            override=body.override,
            expected_version=body.expected_version,
        )
        return view.to_json()

    @route("GET", "/v1/subjects/{customer_id}", "subject.access")
    def subject_access(customer_id: str, who: Caller) -> dict[str, Any]:
        return SubjectRights(store.db()).access(
            customer_id,
            actor=who.actor,
            table=table,
            contract=loaded_contract,
            registry=open_registry(),
            runs=runs,
        )

    @route("DELETE", "/v1/subjects/{customer_id}", "subject.delete")
    def subject_delete(customer_id: str, body: ReasonBody, who: Caller) -> dict[str, Any]:
        return SubjectRights(store.db()).delete(
            customer_id, actor=who.actor, reason=body.reason, registry=open_registry(), runs=runs
        )

    @route("POST", "/v1/subjects/{customer_id}/opt-out", "subject.opt_out")
    def subject_opt_out(customer_id: str, who: Caller) -> dict[str, Any]:
        return SubjectRights(store.db()).opt_out(customer_id, actor=who.actor)

    @route("DELETE", "/v1/subjects/{customer_id}/opt-out", "subject.opt_out")
    def subject_opt_in(customer_id: str, who: Caller) -> dict[str, Any]:
        return SubjectRights(store.db()).opt_in(customer_id, actor=who.actor)

    @route("GET", "/v1/audit", "audit.read")
    def audit_records(
        since_seq: Annotated[int, Query(ge=0, le=_INT64_MAX)] = 0,
        limit: Annotated[int, Query(ge=1, le=_LIST_MAX)] = 100,
        event: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> dict[str, Any]:
        records = AuditTrail(store.db()).records(event=event, since_seq=since_seq, limit=limit)
        return {
            "records": [r.to_json() for r in records],
            "next_since_seq": records[-1].seq if records else since_seq,
        }

    @route("GET", "/v1/audit/verify", "audit.verify")
    def audit_verify() -> dict[str, Any]:
        return AuditTrail(store.db()).verify().to_json()

    @route("GET", "/v1/holds", "holds.manage")
    def holds_list() -> dict[str, Any]:
        return {"holds": [h.to_json() for h in AuditTrail(store.db()).holds()]}

    @route("POST", "/v1/holds", "holds.manage", status_code=201)
    def holds_set(body: HoldBody, who: Caller) -> dict[str, Any]:
        hold = AuditTrail(store.db()).hold(
            reason=body.reason, actor=who.actor, subject=body.subject, since=body.since, until=body.until
        )
        return hold.to_json()

    @route("DELETE", "/v1/holds/{hold_id}", "holds.manage")
    def holds_release(hold_id: str, body: ReasonBody, who: Caller) -> dict[str, Any]:
        return AuditTrail(store.db()).release(hold_id, actor=who.actor, reason=body.reason).to_json()

    @route("GET", "/v1/tokens", "tokens.manage")
    def tokens_list() -> dict[str, Any]:
        return {"tokens": [t.to_json() for t in Tokens(store.db()).list()]}

    @route("POST", "/v1/tokens", "tokens.manage", status_code=201)
    def tokens_create(body: TokenBody, who: Caller) -> dict[str, Any]:
        token_id, plaintext = Tokens(store.db()).create(
            body.name, body.role, actor=who.actor, ttl_days=body.ttl_days
        )
        return {"id": token_id, "token": plaintext, "note": "shown once: it is stored only as its hash"}

    @route("DELETE", "/v1/tokens/{token_id}", "tokens.manage")
    def tokens_revoke(token_id: str, who: Caller) -> dict[str, Any]:
        return Tokens(store.db()).revoke(token_id, who.actor).to_json()

    app.add_middleware(_AccessLog)
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    assert set(ROLES) >= set().union(*PERMISSIONS.values())
    return app


# --- middleware (pure ASGI) --------------------------------------------------------------------------------

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGI = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


async def _reply(send: _Send, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413 before any route reads it: by its
    Content-Length at once, a chunked one when the limit is passed (the body is held, then replayed)."""

    def __init__(self, app: _ASGI, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"the request body is over {self.max_bytes} bytes"
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if declared > self.max_bytes:
                await _reply(send, 413, too_big)
                return
        messages: list[_Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _reply(send, 413, too_big)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> _Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class _AccessLog:
    """One log line per request: method, the route's template (never its path: a customer id is
    personal data), status and time."""

    def __init__(self, app: _ASGI) -> None:
        self.app = app

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [0]

        async def sending(message: _Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _LOG.info(
                "%s %s %d %.1f ms",
                scope.get("method", "?"),
                _template(scope),
                status[0],
                (time.perf_counter() - start) * 1000,
            )


def _template(scope: _Scope) -> str:
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return str(getattr(candidate, "path", "?"))
    return "<no route>"
