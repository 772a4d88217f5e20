"""``engage audit verify --pushgateway``: the real CLI pushes what it found to a real Pushgateway, the
figures the alerts EngageAuditTrailTampered and EngageAuditTrailVerifyStale read. Intact: every problem
kind at 0; tampered (the append-only triggers dropped first, as an owner would): the kind counted and
exit 1; a Pushgateway that cannot be reached: the report first, then exit 2 naming it."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engage.telemetry import CATALOGUE
from tests.governance_support import tamper
from tests.monitoring_support import free_port, pushgateway

ENGAGE = str(Path(sys.executable).parent / "engage")
KINDS = {"edited", "deleted", "broken_link", "head"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A Pushgateway of this module's own (the session's is scraped by the monitoring stack test)."""
    with pushgateway() as address:
        yield address


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGAGE, "audit", "verify", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _trail(url: str, records: int = 3) -> Any:
    from engage.governance import AuditTrail, open_database

    db = open_database(url)
    trail = AuditTrail(db)
    for i in range(records):
        trail.append("registry.publish", actor="alice", subject="registry:s3://b/customers", payload={"n": i})
    return db


def _pushed(gateway: str, trail: str) -> dict[tuple[str, str], float]:
    """The trail's ``engage_audit_*`` samples the Pushgateway serves: (name, kind or "") -> value; each
    sample's job and instance are checked on the way."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{gateway}/metrics", timeout=10) as answer:
        body = answer.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name.startswith("engage_audit_") and sample.labels.get("trail") == trail:
                assert sample.labels["job"] == "engage_audit", sample
                assert sample.labels["instance"] == trail, sample
                found[(sample.name, sample.labels.get("kind", ""))] = sample.value
    return found


def _problems(pushed: dict[tuple[str, str], float]) -> dict[str, float]:
    return {kind: value for (name, kind), value in pushed.items() if name == "engage_audit_problems"}


def test_an_intact_trail_pushes_every_figure_with_no_problem(gateway: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/governance.db"
    _trail(url, records=3).dispose()
    before = time.time()
    done = _verify("--db", url, "--pushgateway", gateway, "--trail-name", "intact")
    after = time.time()
    assert done.returncode == 0, done.stderr
    assert "audit trail intact: 3 record(s) checked; head 3:" in done.stdout
    pushed = _pushed(gateway, "intact")
    # exactly the catalogue's governance metrics, every problem kind present
    assert {name for name, _ in pushed} == {n for n, s in CATALOGUE.items() if s.source == "governance"}
    assert _problems(pushed) == dict.fromkeys(KINDS, 0.0)
    assert pushed[("engage_audit_records_checked", "")] == 3
    assert pushed[("engage_audit_head_seq", "")] == 3
    assert before <= pushed[("engage_audit_last_verify_timestamp_seconds", "")] <= after
    assert 0 <= pushed[("engage_audit_verify_duration_seconds", "")] < after - before


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("UPDATE audit_records SET payload = :p WHERE seq = 2", "edited"),
        ("DELETE FROM audit_records WHERE seq = 2", "deleted"),
    ],
    ids=["edited", "deleted"],
)
def test_a_tampered_trail_pushes_its_problems_and_exits_1(
    gateway: str, governance_url: str, statement: str, kind: str
) -> None:
    trail = f"tampered-{kind}"
    db = _trail(governance_url, records=4)
    try:
        assert (
            _verify("--pushgateway", gateway, "--trail-name", trail, "--db", governance_url).returncode == 0
        )
        assert _problems(_pushed(gateway, trail)) == dict.fromkeys(KINDS, 0.0)
        tamper(db, statement, p='{"n":7}')
        done = _verify("--pushgateway", gateway, "--trail-name", trail, "--db", governance_url)
    finally:
        db.dispose()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"TAMPERED record 2 ({kind})" in done.stdout
    assert done.stderr == ""  # the push went through
    # the group is replaced: the new result, not the intact one
    pushed = _pushed(gateway, trail)
    problems = _problems(pushed)
    assert problems[kind] >= 1
    assert set(problems) == KINDS
    assert sum(problems.values()) == done.stdout.count("TAMPERED record")
    assert pushed[("engage_audit_records_checked", "")] == (3 if kind == "deleted" else 4)


def test_json_output_and_push_go_together(gateway: str, tmp_path: Path) -> None:
    import json

    url = f"sqlite:///{tmp_path}/governance.db"
    _trail(url, records=2).dispose()
    done = _verify("--db", url, "--json", "--pushgateway", f"http://{gateway}", "--trail-name", "as-json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert _pushed(gateway, "as-json")[("engage_audit_head_seq", "")] == report["head"]["seq"] == 2


def test_an_unreachable_pushgateway_is_exit_2_after_the_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/governance.db"
    _trail(url, records=2).dispose()
    closed = f"127.0.0.1:{free_port()}"
    done = _verify("--db", url, "--pushgateway", closed)
    assert done.returncode == 2
    assert "audit trail intact: 2 record(s) checked" in done.stdout
    assert done.stderr.startswith(f"engage: error: cannot push metrics to the Pushgateway at {closed}: ")
    assert "(the verification above ran; its result was not pushed)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tampered_trail_stays_exit_1_when_the_push_fails_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/governance.db"
    db = _trail(url, records=3)
    try:
        tamper(db, "UPDATE audit_records SET actor = 'mallory' WHERE seq = 3")
    finally:
        db.dispose()
    closed = f"127.0.0.1:{free_port()}"
    done = _verify("--db", url, "--pushgateway", closed)
    assert done.returncode == 1
    assert "TAMPERED record 3 (edited)" in done.stdout
    assert f"engage: error: cannot push metrics to the Pushgateway at {closed}: " in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pushgateway", "pushgateway:port"], "--pushgateway 'pushgateway:port': give host:port"),
        (["--pushgateway", " "], "--pushgateway ' ': give host:port"),
        (
            ["--trail-name", "postgresql+psycopg://engage@db.internal/engage"],
            "--trail-name 'postgresql+psycopg://engage@db.internal/engage': give a short name",
        ),
        (["--trail-name", "Prod"], "--trail-name 'Prod': give a short name"),
    ],
    ids=["port", "empty", "url-as-name", "upper-case"],
)
def test_bad_push_flags_fail_before_anything_is_verified(
    gateway: str, tmp_path: Path, args: list[str], message: str
) -> None:
    url = f"sqlite:///{tmp_path}/governance.db"
    _trail(url, records=1).dispose()
    done = _verify("--db", url, "--pushgateway", gateway, *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
