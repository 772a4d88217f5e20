"""API tokens: shown once, stored as SHA-256, refused when unknown, malformed, expired or revoked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engage.errors import GovernanceError


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    from engage.governance import open_database

    database = open_database(f"sqlite:///{tmp_path}/governance.db")
    yield database
    database.dispose()


def refused(call: Any) -> GovernanceError:
    with pytest.raises(GovernanceError) as caught:
        call()
    return caught.value


def test_a_token_is_shown_once_and_stored_only_as_its_hash(db: Any) -> None:
    from sqlalchemy import select

    from engage.governance import AuditTrail, Tokens
    from engage.governance._tables import ApiToken

    trail = AuditTrail(db)
    tokens = Tokens(db, trail)
    token_id, plaintext = tokens.create("ci-bot", "reviewer", actor="alice")
    assert plaintext.startswith("eng_")
    assert len(plaintext) == 47
    with db.session(readonly=True) as s:
        row = s.execute(select(ApiToken)).scalar_one()
    assert row.id == token_id
    assert row.token_sha256 == hashlib.sha256(plaintext.encode()).hexdigest()
    info = tokens.verify(plaintext)
    assert (info.id, info.name, info.role, info.actor) == (
        token_id,
        "ci-bot",
        "reviewer",
        "ci-bot (reviewer)",
    )
    record = trail.records(event="token.create")[0]
    assert record.actor == "alice"
    assert record.subject == f"token:{token_id}"
    assert plaintext not in repr(trail.records())
    assert plaintext[4:] not in repr(trail.records())
    second = tokens.create("ci-bot", "reviewer", actor="alice")[1]
    assert second != plaintext


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "eng_",
        "Bearer x",
        "eng_" + "a" * 42,
        "eng_" + "a" * 44,
        "xyz_" + "a" * 43,
        "eng_" + "!" * 43,
        "eng_" + "a" * 43,
    ],
)
def test_malformed_and_unknown_tokens_are_401(db: Any, bad: str) -> None:
    from engage.governance import Tokens

    tokens = Tokens(db)
    tokens.create("someone", "admin", actor="alice")
    assert refused(lambda: tokens.verify(bad)).http_status == 401


def test_revoked_and_expired_tokens_are_401(db: Any) -> None:
    from engage.governance import AuditTrail, Tokens
    from engage.governance._tables import ApiToken

    trail = AuditTrail(db)
    tokens = Tokens(db, trail)
    revoked_id, revoked = tokens.create("old", "auditor", actor="alice")
    expiring_id, expiring = tokens.create("temp", "auditor", actor="alice", ttl_days=1)
    assert tokens.verify(expiring).id == expiring_id
    info = tokens.revoke(revoked_id, "alice")
    assert info.revoked_at is not None
    assert not info.active()
    assert refused(lambda: tokens.verify(revoked)).http_status == 401
    assert refused(lambda: tokens.revoke(revoked_id, "alice")).http_status == 409
    assert refused(lambda: tokens.revoke("no-such-id", "alice")).http_status == 404
    with db.session() as s:
        row = s.get(ApiToken, expiring_id)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert refused(lambda: tokens.verify(expiring)).http_status == 401
    listed = {t.id: t for t in tokens.list()}
    assert set(listed) == {revoked_id, expiring_id}
    assert not listed[expiring_id].active()
    assert listed[expiring_id].to_json()["active"] is False
    assert [r.event for r in trail.records(event="token.")] == ["token.create"] * 2 + ["token.revoke"]


@pytest.mark.parametrize(
    ("name", "role", "ttl"),
    [
        ("", "admin", None),
        ("n", "root", None),
        ("n", "admin", 0),
        ("a\x00b", "admin", None),
        ("x" * 129, "admin", None),
    ],
)
def test_bad_token_requests_are_400(db: Any, name: str, role: str, ttl: int | None) -> None:
    from engage.governance import Tokens

    error = refused(lambda: Tokens(db).create(name, role, actor="alice", ttl_days=ttl))
    assert error.http_status == 400
    assert Tokens(db).list() == []


def test_injection_strings_as_token_names_are_stored_literally(db: Any) -> None:
    from engage.governance import Tokens

    tokens = Tokens(db)
    names = ["' OR 1=1 --", "'; DROP TABLE api_tokens; --", 'x" OR "1"="1', "名前🙂"]
    for name in names:
        tokens.create(name, "reviewer", actor=name)
    assert [t.name for t in tokens.list()] == names
