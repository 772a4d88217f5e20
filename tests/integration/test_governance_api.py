"""The governance REST API on SQLite and on a real PostgreSQL server: a real ``engage governance serve``
process on loopback for the main flows, the 401 cases, 409, 413, 422 and a database that is down; the
role matrix cell by cell in-process (walking :data:`engage.governance.api.PERMISSIONS` and every route
the app has, so a new route cannot be left out); injection strings through the API and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_governance_subjects import (
    CANARY,
    INJECTIONS,
    OTHER,
    TABLES,
    add_item,
    table_names,
)
from tests.monitoring_support import wait_ok
from tests.serving_support import free_port

ENGAGE = str(Path(sys.executable).parent / "engage")
ROLE_NAMES = ("reviewer", "auditor", "admin")


def engage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENGAGE, *args], capture_output=True, text=True, timeout=120, check=False)


def make_token(db: Any, role: str, name: str | None = None, **kwargs: Any) -> str:
    from engage.governance import Tokens

    return Tokens(db).create(name or f"{role}-1", role, actor="test", **kwargs)[1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def quoted(customer_id: str) -> str:
    return urllib.parse.quote(customer_id, safe="")


@dataclass
class Served:
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def serve(db_url: str, workdir: Path, *extra: str) -> Iterator[Served]:
    """``engage governance serve`` as a subprocess on a free loopback port."""
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [
                ENGAGE,
                "governance",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                db_url,
                *extra,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ok(f"http://127.0.0.1:{port}/healthz", timeout=60, proc=process)
        yield Served(f"http://127.0.0.1:{port}", log, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def tokens(governance_db: Any) -> dict[str, str]:
    return {role: make_token(governance_db, role) for role in ROLE_NAMES}


# --- a real server -----------------------------------------------------------------------------------------


def test_real_server_main_flows_and_no_customer_id_in_its_log(
    governance_db: Any, governance_url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    item = add_item(governance_db, CANARY)
    with serve(governance_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        admin, auditor, reviewer = (
            bearer(tokens["admin"]),
            bearer(tokens["auditor"]),
            bearer(tokens["reviewer"]),
        )

        listed = http.get("/v1/review", headers=reviewer, params={"status": "pending", "limit": 10})
        assert listed.status_code == 200, listed.text
        assert [i["id"] for i in listed.json()["items"]] == [item]
        got = http.get(f"/v1/review/{item}", headers=auditor).json()
        assert got["customer_id"] == CANARY
        decided = http.post(
            f"/v1/review/{item}/decision",
            headers=reviewer,
            json={"decision": "override", "reason": "called them", "override": {"churn_probability": 0.9}},
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "overridden"
        assert decided.json()["decided_by"] == "reviewer-1 (reviewer)"

        assert http.post(f"/v1/subjects/{CANARY}/opt-out", headers=admin).json()["opted_out"] is True
        export = http.get(f"/v1/subjects/{CANARY}", headers=auditor)
        assert export.status_code == 200, export.text
        assert export.json()["counts"]["review_items"] == 1
        assert export.json()["opt_out"]["actor"] == "admin-1 (admin)"
        unknown = http.get("/v1/subjects/nobody-at-all", headers=auditor)
        assert unknown.status_code == 404
        assert set(unknown.json()) == {"error"}

        erased = http.request("DELETE", f"/v1/subjects/{CANARY}", headers=admin, json={"reason": "ticket 9"})
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"]["review_items"] == 1
        assert http.get(f"/v1/subjects/{CANARY}", headers=admin).status_code == 404
        verify = http.get("/v1/audit/verify", headers=auditor).json()
        assert verify["ok"] is True
        records = http.get("/v1/audit", headers=auditor, params={"since_seq": 0, "limit": 1000}).json()[
            "records"
        ]
        # the erasure's tombstone, then the access that found nothing (no customer key on either)
        assert [r["event"] for r in records[-2:]] == ["subject.erased", "subject.access"]
        assert records[-2]["actor"] == "admin-1 (admin)"
        assert records[-1]["payload"]["found"] is False

        hold = http.post("/v1/holds", headers=admin, json={"reason": "case 1", "subject": "review:x"})
        assert hold.status_code == 201, hold.text
        released = http.request(
            "DELETE", f"/v1/holds/{hold.json()['id']}", headers=admin, json={"reason": "closed"}
        )
        assert released.json()["released_at"] is not None

    log = server.log.read_text(encoding="utf-8")
    assert "GET /v1/subjects/{customer_id} 200" in log
    assert CANARY not in log
    assert tokens["admin"] not in log


def test_real_server_refuses_without_a_valid_token(
    governance_db: Any, governance_url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    from engage.governance import Tokens
    from engage.governance._tables import ApiToken

    created = engage("token", "create", "ops", "--role", "admin", "--db", governance_url, "--json")
    assert created.returncode == 0, created.stderr
    revoked = json.loads(created.stdout)
    assert engage("token", "revoke", revoked["id"], "--db", governance_url).returncode == 0
    expired = make_token(governance_db, "admin", "expiring", ttl_days=1)
    with governance_db.session() as s:
        for row in s.query(ApiToken).where(ApiToken.name == "expiring"):
            row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    assert any(t.name == "expiring" for t in Tokens(governance_db).list())

    headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {tokens['admin']}"},
        {"Authorization": "Bearer eng_" + "A" * 43},
        {"Authorization": "Bearer not-a-token"},
        bearer(revoked["token"]),
        bearer(expired),
    ]
    with serve(governance_url, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for header in headers:
            for method, path in (("GET", "/v1/audit"), ("GET", "/v1/review"), ("GET", "/v1/subjects/x")):
                answer = http.request(method, path, headers=header)
                assert answer.status_code == 401, (header, path, answer.text)
                assert answer.headers["www-authenticate"] == "Bearer"
                assert set(answer.json()) == {"error"}
        assert http.get("/v1/audit", headers=bearer(tokens["admin"])).status_code == 200


def test_two_conflicting_decisions_one_wins_the_other_409(
    governance_db: Any, governance_url: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    from engage.governance import AuditTrail

    item = add_item(governance_db, CANARY)
    admin_token = tokens["admin"]
    with serve(governance_url, tmp_path) as server:
        answers: list[httpx.Response] = []
        barrier = threading.Barrier(2)

        def decide(token: str, decision: str) -> None:
            body: dict[str, Any] = {"decision": decision, "reason": f"{decision} it", "expected_version": 1}
            if decision == "override":
                body["override"] = {"churn_probability": 0.9}
            with httpx.Client(base_url=server.url, timeout=30) as http:
                barrier.wait()
                answers.append(http.post(f"/v1/review/{item}/decision", headers=bearer(token), json=body))

        threads = [
            threading.Thread(target=decide, args=(tokens["reviewer"], "approve")),
            threading.Thread(target=decide, args=(admin_token, "override")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert set(loser.json()) == {"error"}
    decisions = [r for r in AuditTrail(governance_db).records() if r.subject == f"review:{item}"]
    assert len(decisions) == 1


def test_413_and_422_on_a_real_server(governance_url: str, tokens: dict[str, str], tmp_path: Path) -> None:
    admin = bearer(tokens["admin"])
    with (
        serve(governance_url, tmp_path, "--max-body", "4096") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        big = http.post("/v1/holds", headers=admin, json={"reason": "x" * 10_000})
        assert big.status_code == 413
        assert "4096" in big.json()["error"]

        def chunks() -> Iterator[bytes]:
            yield b'{"reason": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        chunked = http.post("/v1/holds", headers=admin, content=chunks())
        assert chunked.status_code == 413
        for body in ({}, {"reason": ""}, {"reason": "r", "extra": 1}, {"reason": "r", "since": "yesterday"}):
            answer = http.post("/v1/holds", headers=admin, json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["error"]
        bad = http.post("/v1/review/x/decision", headers=admin, json={"decision": "maybe", "reason": "r"})
        assert bad.status_code == 422
        assert http.get("/v1/audit", headers=admin, params={"limit": 0}).status_code == 422
        # past what a database integer holds (found by make fuzz: a 500 from SQLite's OverflowError)
        huge = str(2**63)
        assert http.get("/v1/audit", headers=admin, params={"since_seq": huge}).status_code == 422
        assert http.get("/v1/review", headers=admin, params={"offset": huge}).status_code == 422
        assert http.get("/v1/review", headers=admin, params={"status": "everything"}).status_code == 422
        assert http.get("/v1/audit", headers=admin).status_code == 200
        # a bad body or query without a valid token: 401 first (nothing about what the route takes)
        for headers in ({}, bearer("eng_not-a-token")):
            unauthenticated = http.post("/v1/holds", headers=headers, content=b"{not json")
            assert unauthenticated.status_code == 401, unauthenticated.text
            assert "details" not in unauthenticated.json()
            assert http.get("/v1/audit", headers=headers, params={"limit": 0}).status_code == 401
        reviewer = http.get("/v1/audit", headers=bearer(tokens["reviewer"]), params={"limit": 0})
        assert reviewer.status_code == 403


def test_database_down_is_503_with_a_clear_message(tmp_path: Path) -> None:
    closed = f"postgresql+psycopg://engage@127.0.0.1:{free_port()}/engage"
    with serve(closed, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        answer = http.get("/v1/audit", headers=bearer("eng_" + "A" * 43))
        assert answer.status_code == 503
        message = answer.json()["error"]
        assert "governance database postgresql+psycopg://engage@127.0.0.1" in message
        assert "failed" in message


# --- the role matrix, cell by cell -------------------------------------------------------------------------


def _examples(db: Any) -> dict[tuple[str, str], Callable[[], tuple[str, Any]]]:
    """One request per route: (concrete path, JSON body or None), made fresh per call."""
    from engage.governance import AuditTrail, SubjectRights, Tokens

    def item() -> str:
        return add_item(db, CANARY)

    def known() -> str:
        customer = f"c-{os.urandom(4).hex()}"
        SubjectRights(db).opt_out(customer, actor="setup")
        return customer

    def hold() -> str:
        return AuditTrail(db).hold(reason="r", actor="setup", subject="x").id

    def token() -> str:
        return Tokens(db).create("spare", "reviewer", actor="setup")[0]

    return {
        ("GET", "/v1/review"): lambda: ("/v1/review?status=all", None),
        ("GET", "/v1/review/{item_id}"): lambda: (f"/v1/review/{item()}", None),
        ("POST", "/v1/review/{item_id}/decision"): lambda: (
            f"/v1/review/{item()}/decision",
            {"decision": "approve", "reason": "fine"},
        ),
        ("GET", "/v1/subjects/{customer_id}"): lambda: (f"/v1/subjects/{known()}", None),
        ("DELETE", "/v1/subjects/{customer_id}"): lambda: (f"/v1/subjects/{known()}", {"reason": "asked"}),
        ("POST", "/v1/subjects/{customer_id}/opt-out"): lambda: (f"/v1/subjects/{OTHER}/opt-out", None),
        ("DELETE", "/v1/subjects/{customer_id}/opt-out"): lambda: (f"/v1/subjects/{known()}/opt-out", None),
        ("GET", "/v1/audit"): lambda: ("/v1/audit?since_seq=0&limit=5", None),
        ("GET", "/v1/audit/verify"): lambda: ("/v1/audit/verify", None),
        ("GET", "/v1/holds"): lambda: ("/v1/holds", None),
        ("POST", "/v1/holds"): lambda: ("/v1/holds", {"reason": "case", "subject": "review:1"}),
        ("DELETE", "/v1/holds/{hold_id}"): lambda: (f"/v1/holds/{hold()}", {"reason": "closed"}),
        ("GET", "/v1/tokens"): lambda: ("/v1/tokens", None),
        ("POST", "/v1/tokens"): lambda: ("/v1/tokens", {"name": "new", "role": "auditor"}),
        ("DELETE", "/v1/tokens/{token_id}"): lambda: (f"/v1/tokens/{token()}", None),
    }


def test_role_matrix_cell_by_cell(governance_db: Any, governance_url: str, tokens: dict[str, str]) -> None:
    from fastapi.routing import APIRoute
    from fastapi.testclient import TestClient

    from engage.governance import ROLES
    from engage.governance.api import PERMISSIONS, PUBLIC, create_app

    app = create_app(governance_url)
    table: dict[tuple[str, str], str | None] = app.state.permissions
    served = {(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in (r.methods or ())}
    assert served == set(table), "every route is added with its permission"
    assert {p for p in table.values() if p is not None} == set(PERMISSIONS), "every permission guards a route"
    assert set(ROLES) == set(ROLE_NAMES)
    assert PERMISSIONS["subject.delete"] == {"admin"}  # the two named refusals
    assert "auditor" not in PERMISSIONS["review.decide"]
    examples = _examples(governance_db)
    missing = {k for k, p in table.items() if p is not None} - set(examples)
    assert not missing, f"routes without an example request in this test: {missing}"

    client = TestClient(app)
    cells = 0
    for (method, path), permission in sorted(table.items(), key=lambda kv: kv[0][::-1]):
        if permission is None:
            assert (method, path) in PUBLIC
            assert client.request(method, path).status_code == 200
            continue
        for role in (None, *ROLES):
            url, body = examples[(method, path)]()
            headers = {} if role is None else bearer(tokens[role])
            answer = client.request(method, url, headers=headers, json=body)
            cell = f"{method} {path} as {role}: {answer.status_code} {answer.text[:200]}"
            if role is None:
                assert answer.status_code == 401, cell
                assert answer.headers["www-authenticate"] == "Bearer", cell
            elif role in PERMISSIONS[permission]:
                assert answer.status_code in (200, 201), cell
            else:
                assert answer.status_code == 403, cell
                assert permission in answer.json()["error"], cell
            cells += 1
    assert cells == 4 * len(examples)


# --- injection strings through the API and the CLI ----------------------------------------------------------


def test_injection_strings_through_the_api(
    governance_db: Any, governance_url: str, tokens: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient

    from engage.governance import AuditTrail
    from engage.governance.api import create_app

    add_item(governance_db, OTHER)
    client = TestClient(create_app(governance_url))
    admin = bearer(tokens["admin"])
    before = len(AuditTrail(governance_db).records())
    for text in INJECTIONS:
        path = f"/v1/subjects/{quoted(text)}"
        assert client.get(path, headers=admin).status_code == 404  # not every customer's rows
        assert client.post(f"{path}/opt-out", headers=admin).status_code == 200
        export = client.get(path, headers=admin).json()
        assert export["customer_id"] == text
        assert export["counts"] == {"review_items": 0, "opt_outs": 1, "audit_records": 1}
        erased = client.request("DELETE", path, headers=admin, json={"reason": text})
        assert erased.json()["reason"] == text
        assert erased.json()["erased"]["opt_outs"] == 1
        made = client.post("/v1/tokens", headers=admin, json={"name": text, "role": "reviewer"})
        assert made.status_code == 201, made.text
        found = client.get("/v1/audit", headers=admin, params={"event": text, "since_seq": 0})
        assert found.json()["records"] == []
        assert client.get(f"/v1/review/{quoted(text)}", headers=admin).status_code == 404
        assert client.get("/v1/review", headers=admin, params={"status": text}).status_code == 422
        assert client.get("/v1/audit", headers=admin, params={"since_seq": text}).status_code == 422
    assert client.get("/v1/subjects/a%00b", headers=admin).status_code == 400
    assert (
        client.post("/v1/tokens", headers=admin, json={"name": "a\x00b", "role": "admin"}).status_code == 400
    )
    names = [t["name"] for t in client.get("/v1/tokens", headers=admin).json()["tokens"]]
    assert names[-len(INJECTIONS) :] == INJECTIONS
    assert len(AuditTrail(governance_db).records()) > before
    assert AuditTrail(governance_db).verify().ok
    assert table_names(governance_db) >= TABLES
    assert len(client.get("/v1/review?status=all", headers=admin).json()["items"]) == 1


@pytest.mark.long  # a CLI process per string, on both databases (~35 s): make test-long (make ci)
def test_injection_strings_through_the_cli(governance_db: Any, governance_url: str, tmp_path: Path) -> None:
    from engage.governance import AuditTrail

    db = ("--db", governance_url)
    add_item(governance_db, OTHER)
    for text in INJECTIONS[:4]:
        unknown = engage("subject", "access", text, *db)
        assert unknown.returncode == 2
        assert "no data held" in unknown.stderr
        assert text not in unknown.stderr
        assert engage("subject", "opt-out", text, *db, "--actor", text).returncode == 0
        out = tmp_path / "export.json"
        exported = engage("subject", "access", text, *db, "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        assert json.loads(out.read_text(encoding="utf-8"))["customer_id"] == text
        erased = engage("subject", "delete", text, "--reason", text, *db, "--json")
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout)["reason"] == text
        assert engage("token", "create", text, "--role", "auditor", *db).returncode == 0
    listed = engage("token", "list", *db, "--json")
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == INJECTIONS[:4]
    nul = subprocess.run(
        [ENGAGE, "subject", "opt-out", "a\x01b", *db], capture_output=True, text=True, check=False
    )
    assert nul.returncode == 2
    assert table_names(governance_db) >= TABLES
    assert AuditTrail(governance_db).verify().ok
