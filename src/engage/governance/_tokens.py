"""Bearer tokens of the governance API: a role each, stored only as their SHA-256, shown once.

A token is ``eng_`` followed by 43 URL-safe characters (``secrets.token_urlsafe(32)``: 256 random bits),
so a leaked one is recognisable in a scan. The database keeps its SHA-256 (``api_tokens.token_sha256``),
never the token: a copy of the database lets nobody in. Creating and revoking a token are audited (its
id, name and role; never the token). Verifying one is not audited: it happens on every API request and
reads only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

from engage.errors import GovernanceError

from ._audit import AuditTrail, utc

if TYPE_CHECKING:
    from ._db import Database

__all__ = ["ROLES", "TOKEN_PREFIX", "Role", "TokenInfo", "Tokens", "check_text"]

Role = Literal["reviewer", "admin", "auditor"]
#: the roles of the governance API (what each may do: ``engage.governance.api.PERMISSIONS``)
ROLES: tuple[str, ...] = get_args(Role)
#: every Engage token starts with this (a secret scanner's pattern: ``eng_[A-Za-z0-9_-]{43}``)
TOKEN_PREFIX = "eng_"  # nosec B105 # a public prefix, not a token
_TOKEN = re.compile(r"eng_[A-Za-z0-9_-]{43}")
_NAME_MAX = 128
#: what a 401 says: the same for unknown, malformed, expired and revoked (no oracle for guessing)
_UNAUTHORIZED = "invalid bearer token: unknown, malformed, expired or revoked"


def check_text(value: str, what: str, *, max_length: int) -> str:
    """``value`` as given, or GovernanceError 400 when it is empty, too long or holds control characters
    (a NUL cannot be stored in a PostgreSQL text column: refused on both databases alike)."""
    if not isinstance(value, str) or not value.strip():
        raise GovernanceError(f"{what} is empty", http_status=400)
    if len(value) > max_length:
        raise GovernanceError(f"{what} is longer than {max_length} characters", http_status=400)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value) or "\x7f" in value:
        raise GovernanceError(f"{what} holds control characters", http_status=400)
    return value


def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as stored (never the token itself)."""

    id: str
    name: str
    role: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def actor(self) -> str:
        """How the audit trail names what this token's holder does: its name and role."""
        return f"{self.name} ({self.role})"

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def to_json(self) -> dict[str, Any]:
        def opt(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "expires_at": opt(self.expires_at),
            "revoked_at": opt(self.revoked_at),
            "active": self.active(),
        }


class Tokens:
    """The API tokens of one governance database."""

    def __init__(self, db: Database, trail: AuditTrail | None = None) -> None:
        self.db = db
        self.trail = trail or AuditTrail(db)

    def create(self, name: str, role: str, *, actor: str, ttl_days: int | None = None) -> tuple[str, str]:
        """A new token: ``(token_id, plaintext)``. The plaintext is not kept anywhere: show it once."""
        from ._tables import ApiToken

        check_text(name, "token name", max_length=_NAME_MAX)
        if role not in ROLES:
            raise GovernanceError(f"role {role!r}: use one of {', '.join(ROLES)}", http_status=400)
        if ttl_days is not None and ttl_days < 1:
            raise GovernanceError("a token's lifetime (ttl_days) is at least one day", http_status=400)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = ApiToken(
            id=str(uuid.uuid4()),
            name=name,
            role=role,
            token_sha256=_digest(plaintext),
            created_by=actor,
            created_at=now,
            expires_at=None if ttl_days is None else now + timedelta(days=ttl_days),
        )
        with self.db.session() as s:
            s.add(row)
            s.flush()
            info = _info(row)
            self.trail.append(
                "token.create",
                actor=actor,
                subject=f"token:{row.id}",
                payload={
                    "id": info.id,
                    "name": name,
                    "role": role,
                    "expires_at": info.to_json()["expires_at"],
                },
                session=s,
            )
        return info.id, plaintext

    def verify(self, plaintext: str) -> TokenInfo:
        """The token's record; GovernanceError 401 when it is malformed, unknown, expired or revoked."""
        from sqlalchemy import select

        from ._tables import ApiToken

        if not isinstance(plaintext, str) or not _TOKEN.fullmatch(plaintext):
            raise GovernanceError(_UNAUTHORIZED, http_status=401)
        digest = _digest(plaintext)
        with self.db.session(readonly=True) as s:
            row = s.execute(select(ApiToken).where(ApiToken.token_sha256 == digest)).scalar_one_or_none()
            if row is None or not hmac.compare_digest(row.token_sha256, digest):
                raise GovernanceError(_UNAUTHORIZED, http_status=401)
            info = _info(row)
        if not info.active():
            raise GovernanceError(_UNAUTHORIZED, http_status=401)
        return info

    def revoke(self, token_id: str, actor: str) -> TokenInfo:
        """Revoke a token (from now on it is refused); 404 unknown, 409 revoked already."""
        from ._tables import ApiToken

        check_text(token_id, "token id", max_length=36)
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise GovernanceError(f"no token {token_id!r}", http_status=404)
            if row.revoked_at is not None:
                raise GovernanceError(f"token {token_id} was revoked already", http_status=409)
            row.revoked_at = datetime.now(UTC)
            s.flush()
            info = _info(row)
            self.trail.append(
                "token.revoke",
                actor=actor,
                subject=f"token:{row.id}",
                payload={"id": info.id, "name": info.name, "role": info.role},
                session=s,
            )
        return info

    def list(self) -> list[TokenInfo]:
        """Every token, oldest first (revoked and expired ones too: ``active`` says which)."""
        from sqlalchemy import select

        from ._tables import ApiToken

        with self.db.session(readonly=True) as s:
            rows = s.execute(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)).scalars()
            return [_info(r) for r in rows]


def _info(row: Any) -> TokenInfo:
    def opt(t: datetime | None) -> datetime | None:
        return None if t is None else utc(t)

    return TokenInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        created_by=row.created_by,
        created_at=utc(row.created_at),
        expires_at=opt(row.expires_at),
        revoked_at=opt(row.revoked_at),
    )
