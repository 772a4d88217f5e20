"""``engage audit``: the one audit trail: verify it, read it, purge it past retention, hold it for a case.

``verify`` exits 0 when every record is as it was appended and 1 naming each record that is not (edited,
deleted, inserted or reordered); any other problem (database down, bad flag) is exit 2. With
``--pushgateway`` it then pushes what it found (``job="engage_audit"``, ``instance=<trail>``: the
``engage_audit_*`` gauges of ``engage.telemetry.CATALOGUE``); a push that fails is exit 2 after the
report, except that a tampered trail stays exit 1.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from ._options import ACTOR_HELP, DB_HELP, actor_name

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from engage.governance import AuditTrail, VerifyReport

app = typer.Typer(
    help="The audit trail (hash-chained): verify, list, export, purge past retention, legal holds.",
    no_args_is_help=True,
)


#: the Pushgateway job of the verification's figures
AUDIT_JOB = "engage_audit"
#: every kind of problem verify names (engage.governance.Problem.kind): each is pushed, 0 when none
PROBLEM_KINDS = ("edited", "deleted", "broken_link", "head")
#: a trail's name: a short label value, never a database URL (which may name a host or hold a password)
TRAIL_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


def _trail(db: str | None) -> AuditTrail:
    from engage.governance import AuditTrail, open_database

    return AuditTrail(open_database(db))


def _when(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    from datetime import UTC

    from engage.errors import ConfigError

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: give an ISO 8601 date or time (2026-01-31, 2026-01-31T12:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _gateway(value: str) -> str:
    """``--pushgateway`` checked before anything runs: host:port, or an http(s) URL."""
    from urllib.parse import urlsplit

    from engage.errors import ConfigError

    text = value.strip()
    try:
        parts = urlsplit(text if "://" in text else f"http://{text}")
        ok = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and ("://" in text or parts.port is not None)
        )
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"--pushgateway {value!r}: give host:port (pushgateway.monitoring:9091) or a URL")
    return text


def verify_registry(
    report: VerifyReport, *, trail: str, finished: float, seconds: float
) -> CollectorRegistry:
    """The verification's gauges (``engage_audit_*``), every problem kind present (0 when none)."""
    from prometheus_client import CollectorRegistry

    from engage.telemetry import metric

    registry = CollectorRegistry()
    metric("engage_audit_records_checked").create(registry).labels(trail).set(report.checked)
    problems = metric("engage_audit_problems").create(registry)
    counts = dict.fromkeys(PROBLEM_KINDS, 0)
    for problem in report.problems:
        counts[problem.kind] = counts.get(problem.kind, 0) + 1
    for kind, n in counts.items():
        problems.labels(trail, kind).set(n)
    metric("engage_audit_head_seq").create(registry).labels(trail).set(report.head_seq)
    metric("engage_audit_last_verify_timestamp_seconds").create(registry).labels(trail).set(finished)
    metric("engage_audit_verify_duration_seconds").create(registry).labels(trail).set(seconds)
    return registry


@app.command("verify")
def verify(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        help="SEQ:HASH of a head kept elsewhere (a ticket, a model card): record SEQ must have HASH.",
    ),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
    pushgateway: str | None = typer.Option(
        None,
        "--pushgateway",
        help='Then push the result to this Prometheus Pushgateway (host:port; job="engage_audit"): '
        "records checked, problems by kind, head, time and duration of the verification.",
    ),
    trail_name: str = typer.Option(
        "default",
        "--trail-name",
        help="The trail's name on the pushed series (label trail, group instance): a short name such "
        "as prod-eu, never the database URL.",
    ),
) -> None:
    """Walk the whole chain; name every record that was edited, deleted, inserted or reordered (exit 1)."""
    import json
    import time

    from engage.cli.console import out
    from engage.errors import ConfigError

    expected = None
    if expect_head is not None:
        seq, _, digest = expect_head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ConfigError(
                f"--expect-head {expect_head!r}: give SEQ:HASH (a record number and 64 hex digits)"
            )
        expected = (int(seq), digest)
    if not TRAIL_NAME.fullmatch(trail_name):
        raise ConfigError(
            f"--trail-name {trail_name!r}: give a short name (lower-case letters, digits, '.', '_', '-'; "
            "at most 63), not a database URL"
        )
    if pushgateway is not None:
        pushgateway = _gateway(pushgateway)
    trail = _trail(db)
    started = time.perf_counter()
    report = trail.verify(expect_head=expected)
    seconds = time.perf_counter() - started
    finished = time.time()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        console = out()
        for problem in report.problems:
            console.print(f"TAMPERED record {problem.seq} ({problem.kind}): {problem.message}")
        state = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        console.print(
            f"audit trail {state}: {report.checked} record(s) checked; head {report.head_seq}:{report.head_hash}"
        )
    if pushgateway is not None:
        from engage.quality import push_metrics

        registry = verify_registry(report, trail=trail_name, finished=finished, seconds=seconds)
        try:
            push_metrics(registry, pushgateway, job=AUDIT_JOB, instance=trail_name)
        except ConfigError as e:
            failed = ConfigError(f"{e} (the verification above ran; its result was not pushed)")
            if report.ok:
                raise failed from e
            # a tampered trail stays exit 1 (the stronger signal); the failed push is said all the same
            typer.echo(f"engage: error: {failed}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command("list")
def list_records(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    event: str | None = typer.Option(
        None, "--event", help="Only this event (a prefix ending in '.' matches many)."
    ),
    subject: str | None = typer.Option(None, "--subject", help="Only records about this subject."),
    since: int = typer.Option(0, "--since-seq", min=0, help="Only records after this sequence number."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many records."),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per line."),
) -> None:
    """Print audit records, oldest first."""
    import json

    from rich.table import Table

    from engage.cli.console import out

    records = _trail(db).records(event=event, subject=subject, since_seq=since, limit=limit)
    if as_json:
        for record in records:
            typer.echo(json.dumps(record.to_json(), sort_keys=True))
        return
    table = Table(title=f"audit trail: {len(records)} record(s)", title_justify="left")
    for col in ("seq", "at (UTC)", "event", "actor", "subject", "payload"):
        table.add_column(col)
    for r in records:
        payload = r.redacted or json.dumps(r.payload, sort_keys=True)
        table.add_row(
            str(r.seq), f"{r.at:%Y-%m-%d %H:%M:%S}", r.event, r.actor, r.subject or "", payload[:80]
        )
    out().print(table)


@app.command("export")
def export(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Every record as JSON lines (with its hashes), oldest first: an archive anyone can re-verify."""
    import json

    for record in _trail(db).iter_all():
        typer.echo(json.dumps(record.to_json(), sort_keys=True))


@app.command("purge")
def purge(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    retention_days: int | None = typer.Option(
        None,
        "--retention-days",
        min=1,
        help="Keep payloads this long (default: $ENGAGE_GOVERNANCE_RETENTION_DAYS, else 7 years).",
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Clear the payloads of records past retention (legal holds kept); the chain still verifies."""
    from engage.cli.console import out
    from engage.governance import GovernanceSettings

    days = retention_days or GovernanceSettings().retention_days
    result = _trail(db).purge(retention_days=days, actor=actor_name(actor))
    out().print(
        f"purged {result.purged} record payload(s) older than {result.cutoff:%Y-%m-%d %H:%M} UTC; "
        f"{result.held} kept under legal hold (record {result.record.seq})"
    )


@app.command("hold")
def hold(
    reason: str = typer.Option(..., "--reason", help="Why (a case or ticket reference)."),
    subject: str | None = typer.Option(None, "--subject", help="Hold every record about this subject."),
    since: str | None = typer.Option(None, "--since", help="Hold records from this time (ISO 8601)."),
    until: str | None = typer.Option(None, "--until", help="Hold records up to this time (ISO 8601)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Put a legal hold on records (by subject, time window or both): purges and erasures keep them."""
    typer.echo(
        _trail(db)
        .hold(
            reason=reason,
            actor=actor_name(actor),
            subject=subject,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
        )
        .id
    )


@app.command("release")
def release(
    hold_id: str = typer.Argument(..., help="The hold's id (engage audit holds)."),
    reason: str = typer.Option(..., "--reason", help="Why the hold ends."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Release a legal hold (audited)."""
    _trail(db).release(hold_id, actor=actor_name(actor), reason=reason)


@app.command("holds")
def holds(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    all_holds: bool = typer.Option(False, "--all", help="Released holds too."),
) -> None:
    """The legal holds, as JSON lines."""
    import json

    for h in _trail(db).holds(active=not all_holds):
        typer.echo(json.dumps(h.to_json(), sort_keys=True))


@app.command("import-registry")
def import_registry(
    registry: str | None = typer.Option(
        None, "--registry", "-r", help="Registry URI (default: $ENGAGE_REGISTRY_URI)."
    ),
    model: str | None = typer.Option(None, "--model", help="Model inside the registry."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Move a registry's old ``audit/*.json`` files onto the trail (oldest first), then delete them.

    Each file is appended with its key, then removed; a second run skips keys the trail holds already,
    so an interrupted import is finished by running it again.
    """
    from engage.cli.console import out
    from engage.registry import Registry, RegistrySettings

    settings = RegistrySettings()
    trail = _trail(db)
    reg = Registry(registry or settings.uri, model=model or settings.model, trail=trail)
    done = {
        str((e.payload or {}).get("imported_from"))
        for e in trail.records(subject=reg.subject)
        if e.payload and "imported_from" in e.payload
    }
    moved = 0
    for key, record in reg.legacy_audit():
        if key not in done:
            reg.record({**record, "imported_from": key})
            moved += 1
        reg.remove_legacy_audit(key)
    out().print(f"{moved} legacy audit record(s) of {reg.location} moved onto the audit trail")
