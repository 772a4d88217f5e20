"""Data-subject rights over pipeline run outputs (:class:`engage.governance.RunOutputs`): every place a
run keeps a customer is found, and erased there (rows dropped, per-customer folders deleted, reports
masked) with everyone else's data left as it was; through SubjectRights on SQLite and a real PostgreSQL
server, the real CLI, the real API server, and a copy of a real pipeline run."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engage.errors import GovernanceError
from engage.privacy import mask
from tests.integration.test_governance_api import bearer, engage, make_token, serve
from tests.integration.test_governance_subjects import CANARY, OTHER, add_item, cells_holding

#: a longer id that begins with the canary's: never taken for it
NEIGHBOUR = CANARY + "0"
RUN_A = "engage-customers-2026-01-01-00-00-00-000001"
RUN_B = "engage-customers-2026-01-02-00-00-00-000002"
RUN_C = "engage-customers-2026-01-03-00-00-00-000003"
#: every place the fake runs keep the canary: path -> (kind, rows)
CANARY_PLACES = {
    f"{RUN_A}/load-data/data": ("parquet", 2),
    f"{RUN_A}/validate/remediated": ("parquet", 2),
    f"{RUN_A}/validate/report/remediated.parquet": ("parquet", 2),
    f"{RUN_A}/validate/report/quarantine.parquet": ("parquet", 1),
    f"{RUN_A}/validate/report/report.json": ("json", 3),
    f"{RUN_A}/validate/report/lineage.jsonl": ("jsonl", 1),
    f"{RUN_A}/validate/report/summary.md": ("markdown", 1),
    f"{RUN_A}/validate/report/summary.html": ("html", 2),
    f"{RUN_A}/evaluate/training/test_predictions.parquet": ("parquet", 1),
    f"{RUN_B}/load-data/data": ("csv", 1),
    f"{RUN_B}/explain/explanations/customers/{CANARY}": ("folder", 3),
    f"{RUN_B}/explain/step": ("json", 1),
    f"{RUN_B}/record-outcome/outcome": ("json", 1),
}
CSV_TEXT = (
    "customer_id,email,tenure_days,note\n"
    f'{OTHER},other@example.org,10,"two\nlines"\n'
    f"{CANARY},canary@example.org,20,plain\n"
    f'{NEIGHBOUR},neighbour@example.org,30,"quoted, comma"\n'
)


# --- a runs tree as the steps write it ---------------------------------------------------------------------


def _frame(ids: list[str | None]) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            "email": pd.array([None if i is None else f"{i}@example.org" for i in ids], dtype="string"),
            "snapshot_at": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
            "tenure_days": pd.array([*range(1, n), None], dtype="Int64"),
            "plan": pd.Categorical(["gold", "basic"] * (n // 2) + ["gold"] * (n % 2)),
            "monthly_spend": np.linspace(10.0, 99.5, n),
        }
    )


def _json(path: Path, document: Any, *, indent: int | None = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=indent) + "\n", encoding="utf-8")


def build_runs(root: Path) -> Path:
    """Three runs: A keeps the canary in its tables and reports, B in a CSV copy of its input and the
    explain step's per-customer folder, C not at all; kfp.local's cache points into B and C."""
    from engage.tables import write_table

    a, b, c = root / RUN_A, root / RUN_B, root / RUN_C
    for folder in ("load-data", "validate/report/data_docs", "evaluate/training", "features/features",
                   "drift-reference/reference", "for-loop-2-iteration-0/train-head/model/xgboost",
                   "explain/explanations/customers", "record-outcome", ".cache"):  # fmt: skip
        for run in (a, b):
            (run / folder).mkdir(parents=True, exist_ok=True)
    (c / "load-data").mkdir(parents=True)
    (root / ".cache").mkdir()

    ids = [OTHER, CANARY, NEIGHBOUR, None, CANARY, "cust-4"]
    write_table(_frame(ids), a / "load-data" / "data")
    write_table(_frame(ids), a / "validate" / "remediated")
    write_table(_frame(ids), a / "validate" / "report" / "remediated.parquet")
    quarantine = pa.Table.from_pandas(_frame([CANARY, OTHER]), preserve_index=False)
    pq.write_table(quarantine, a / "validate" / "report" / "quarantine.parquet", compression="snappy")
    predictions = pd.DataFrame(
        {"customer_id": [OTHER, CANARY, NEIGHBOUR], "churn_probability": [0.1, 0.7, 0.4]}
    )
    write_table(predictions, a / "evaluate" / "training" / "test_predictions.parquet")
    write_table(
        _frame(ids).drop(columns=["customer_id", "email"]),
        a / "drift-reference" / "reference" / "reference.parquet",
    )
    np.savez(a / "features" / "features" / "split.npz", train=np.array([0, 1, 2]), valid=np.array([3]),
             test=np.array([4, 5]), rows=np.array(6))  # fmt: skip
    (a / "for-loop-2-iteration-0" / "train-head" / "model" / "xgboost" / "model.ubj").write_bytes(
        b"{L\x00\x00\x01"
    )
    report = {
        "verdict": "pass_after_remediation",
        "quality": {
            "results": [
                {"id": "BR-001", "sample_keys": [CANARY, OTHER, NEIGHBOUR],
                 "message": f"duplicate key {CANARY} in 2 rows (not {NEIGHBOUR})"},
                {"id": "BR-002", "sample_keys": [f"{CANARY}|2026-01-02", f"{OTHER}|2026-01-02"]},
            ]
        },
    }  # fmt: skip
    _json(a / "validate" / "report" / "report.json", report)
    lineage = [{"eventType": "START", "run": {"facets": {}}}, {"eventType": "COMPLETE", "keys": [CANARY]}]
    (a / "validate" / "report" / "lineage.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lineage))
    (a / "validate" / "report" / "summary.md").write_text(
        f"# Data quality\n\n| check | sample |\n|---|---|\n| BR-001 | {CANARY}, {OTHER}, {NEIGHBOUR} |\n"
    )
    (a / "validate" / "report" / "summary.html").write_text(
        f"<!doctype html><table><tr><td>{CANARY}</td><td>{NEIGHBOUR}</td></tr></table>"
        f'<script>const keys = ["{CANARY}", "{OTHER}"];</script>\n'
    )
    (a / "validate" / "report" / "data_docs" / "index.html").write_text("<!doctype html><p>no keys</p>\n")

    (b / "load-data" / "data").write_text(CSV_TEXT, encoding="utf-8")  # a CSV input's copy: no extension
    for customer in (CANARY, OTHER):
        explained = b / "explain" / "explanations" / "customers" / customer
        explained.mkdir()
        _json(explained / "explanation.json", {"customer": customer, "reasons": ["tenure is short"]})
        (explained / "explanation.md").write_text(f"# Why {customer} may churn\n")
        (explained / "explanation.html").write_text(f"<!doctype html><h1>{customer}</h1>\n")
    _json(b / "explain" / "explanations" / "global.json", {"importance": {"tenure_days": 0.4}})
    _json(b / "explain" / "step", {"step": "explain", "customer": CANARY, "reasons": ["tenure is short"]})
    _json(
        b / "record-outcome" / "outcome",
        {"state": "SUCCEEDED", "steps": [{"step": "explain", "customer": CANARY}]},
    )
    _json(
        b / "explain" / "executor_output.json",
        {"artifacts": {"explanations": {"uri": str(b / "explain")}}},
        indent=None,
    )

    write_table(_frame([OTHER, "cust-9"]), c / "load-data" / "data")
    _json(
        root / ".cache" / "b1.json", {"Output": "pass", "data": {"uri": f"{b}/load-data/data"}}, indent=None
    )
    _json(
        root / ".cache" / "c1.json", {"Output": "pass", "data": {"uri": f"{c}/load-data/data"}}, indent=None
    )
    return root


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    return build_runs(tmp_path / "runs")


def outputs(root: Path) -> Any:
    from engage.contract import load_contract
    from engage.governance import RunOutputs

    return RunOutputs(root, load_contract())


# --- what a scan of every byte finds -----------------------------------------------------------------------


def holding(root: Path, needle: str, *, but: tuple[str, ...] = (NEIGHBOUR,)) -> list[str]:
    """Every file below ``root`` whose bytes hold ``needle``: as stored, inside a zip (npz), or among the
    values of a Parquet table (compressed pages hide them from a byte scan); and every path naming it.
    The longer ids ``but`` (which begin with the needle) are taken out first."""

    def has(data: bytes) -> bool:
        for longer in but:
            data = data.replace(longer.encode(), b"")
        return needle.encode() in data

    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if has(rel.encode()):
            found.append(rel)
            continue
        if not path.is_file():
            continue
        data = path.read_bytes()
        hit = has(data)
        if not hit and data[:4] == b"PAR1":
            table = pq.read_table(path)
            hit = any(has(str(v).encode()) for col in table.columns for v in col.to_pylist())
        if not hit and data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                hit = any(has(z.read(name)) for name in z.namelist())
        if hit:
            found.append(rel)
    return found


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def without(table: pa.Table, customer_id: str) -> pa.Table:
    ids = pc.cast(table.column("customer_id"), pa.string())
    return table.filter(pc.invert(pc.fill_null(pc.equal(ids, customer_id), False)))


# --- RunOutputs ---------------------------------------------------------------------------------------------


def test_access_finds_every_place_a_run_keeps_the_customer(runs_root: Path) -> None:
    runs = outputs(runs_root)
    assert runs.id_column == "customer_id"  # the contract's role: id column
    mentions = runs.customer_mentions(CANARY)
    assert {m["path"]: (m["kind"], m["rows"]) for m in mentions} == CANARY_PLACES
    by_path = {m["path"]: m for m in mentions}
    report = by_path[f"{RUN_A}/validate/report/report.json"]
    assert (report["run"], report["task"], report["output"]) == (RUN_A, "validate", "report")
    rows = by_path[f"{RUN_A}/load-data/data"]["records"]
    assert [r["email"] for r in rows] == [f"{CANARY}@example.org"] * 2
    assert rows[0]["snapshot_at"] == "2026-01-02T00:00:00+00:00"  # JSON-ready
    assert by_path[f"{RUN_B}/load-data/data"]["records"] == [
        {"customer_id": CANARY, "email": "canary@example.org", "tenure_days": "20", "note": "plain"}
    ]
    folder = by_path[f"{RUN_B}/explain/explanations/customers/{CANARY}"]
    assert folder["files"] == ["explanation.html", "explanation.json", "explanation.md"]
    assert (folder["task"], folder["output"]) == ("explain", "explanations")
    # the neighbour is found as itself, never as the canary (nor the canary as the neighbour)
    assert {m["path"] for m in runs.customer_mentions(NEIGHBOUR)} == {
        f"{RUN_A}/load-data/data", f"{RUN_A}/validate/remediated", f"{RUN_A}/validate/report/remediated.parquet",
        f"{RUN_A}/validate/report/report.json", f"{RUN_A}/validate/report/summary.md",
        f"{RUN_A}/validate/report/summary.html", f"{RUN_A}/evaluate/training/test_predictions.parquet",
        f"{RUN_B}/load-data/data",
    }  # fmt: skip
    assert runs.customer_mentions("nobody-at-all") == []


def test_delete_erases_the_customer_and_leaves_everyone_else_as_they_were(runs_root: Path) -> None:
    before = snapshot(runs_root)
    tables = {rel: pq.read_table(runs_root / rel) for rel, data in before.items() if data[:4] == b"PAR1"}
    runs = outputs(runs_root)
    assert set(holding(runs_root, CANARY)) >= set(CANARY_PLACES)  # the scan below sees them all

    assert runs.mask_customer(CANARY) == len(CANARY_PLACES)

    assert holding(runs_root, CANARY) == []
    after = snapshot(runs_root)
    for rel, table in tables.items():
        now = pq.read_table(runs_root / rel)
        assert now.schema.equals(table.schema, check_metadata=True), rel  # same columns, types, metadata
        expected = without(table, CANARY) if "customer_id" in table.column_names else table
        assert now.equals(expected), rel  # everyone else's rows, values and order as they were
    assert (
        pq.ParquetFile(runs_root / RUN_A / "validate/report/quarantine.parquet")
        .metadata.row_group(0)
        .column(0)
        .compression
        == "SNAPPY"
    )  # the file's codec kept
    # the CSV copy: the header and every other record byte for byte (a quoted field spans two lines)
    assert after[f"{RUN_B}/load-data/data"].decode() == CSV_TEXT.replace(
        f"{CANARY},canary@example.org,20,plain\n", ""
    )
    # reports: the id replaced by its mask, the neighbour and the other customer untouched
    report = json.loads(after[f"{RUN_A}/validate/report/report.json"])
    first, second = report["quality"]["results"]
    assert first["sample_keys"] == [mask(CANARY), OTHER, NEIGHBOUR]
    assert first["message"] == f"duplicate key {mask(CANARY)} in 2 rows (not {NEIGHBOUR})"
    assert second["sample_keys"] == [f"{mask(CANARY)}|2026-01-02", f"{OTHER}|2026-01-02"]
    assert after[f"{RUN_A}/validate/report/report.json"].decode().startswith('{\n  "verdict"')  # its layout
    md = after[f"{RUN_A}/validate/report/summary.md"].decode()
    assert f"| BR-001 | {mask(CANARY)}, {OTHER}, {NEIGHBOUR} |" in md
    html = after[f"{RUN_A}/validate/report/summary.html"].decode()
    assert f"<td>{NEIGHBOUR}</td>" in html
    assert f'"{OTHER}"' in html
    assert json.loads(after[f"{RUN_B}/explain/step"])["customer"] == mask(CANARY)
    # the per-customer folder is gone, the other customer's is not
    customers = runs_root / RUN_B / "explain" / "explanations" / "customers"
    assert sorted(p.name for p in customers.iterdir()) == [OTHER]
    # left as they were: no id column, no text, the split's row positions, other runs
    for rel in (f"{RUN_A}/features/features/split.npz", f"{RUN_A}/drift-reference/reference/reference.parquet",
                f"{RUN_A}/for-loop-2-iteration-0/train-head/model/xgboost/model.ubj",
                f"{RUN_A}/validate/report/data_docs/index.html", f"{RUN_B}/explain/explanations/global.json",
                f"{RUN_C}/load-data/data"):  # fmt: skip
        assert after[rel] == before[rel], rel
    # kfp.local's cache entries into an erased run are dropped (a rerun recomputes), the others kept
    assert sorted(p.name for p in (runs_root / ".cache").iterdir()) == ["c1.json"]
    # nothing left: a second erasure changes nothing
    assert runs.customer_mentions(CANARY) == []
    assert runs.mask_customer(CANARY) == 0
    assert snapshot(runs_root) == after
    assert {m["path"] for m in runs.customer_mentions(NEIGHBOUR)} >= {
        f"{RUN_A}/load-data/data",
        f"{RUN_B}/load-data/data",
    }


def test_a_short_id_is_erased_from_tables_and_whole_values_only(tmp_path: Path) -> None:
    """``42`` would match every count and figure of a report: tables drop its rows, JSON values that
    are the id are masked, free text is not searched for it."""
    from engage.tables import write_table

    root = tmp_path / "runs"
    report = root / RUN_A / "validate" / "report"
    report.mkdir(parents=True)
    write_table(_frame(["42", "420", "7"]), root / RUN_A / "load-data" / "data")
    _json(report / "report.json", {"results": [{"sample_keys": ["42", "420"], "message": "checked 42 rows"}]})
    (report / "summary.md").write_text("# Data quality\n\n42 rows checked\n")
    runs = outputs(root)
    assert {m["path"]: m["rows"] for m in runs.customer_mentions("42")} == {
        f"{RUN_A}/load-data/data": 1,
        f"{RUN_A}/validate/report/report.json": 1,
    }
    assert runs.mask_customer("42") == 2
    assert pq.read_table(root / RUN_A / "load-data" / "data").column("customer_id").to_pylist() == [
        "420",
        "7",
    ]
    result = json.loads((report / "report.json").read_text())["results"][0]
    assert result == {"sample_keys": [mask("42"), "420"], "message": "checked 42 rows"}
    assert (report / "summary.md").read_text() == "# Data quality\n\n42 rows checked\n"


def test_a_missing_root_is_a_400(tmp_path: Path) -> None:
    with pytest.raises(GovernanceError, match="no such folder") as e:
        outputs(tmp_path / "nowhere")
    assert e.value.http_status == 400


# --- SubjectRights on both databases ------------------------------------------------------------------------


def test_subject_rights_search_and_erase_the_runs_with_the_database(
    governance_db: Any, runs_root: Path
) -> None:
    from engage.governance import AuditTrail, SubjectRights

    add_item(governance_db, CANARY)
    rights = SubjectRights(governance_db)
    runs = outputs(runs_root)

    export = rights.access(CANARY, actor="dpo", runs=runs)
    assert export["counts"] == {
        "review_items": 1,
        "opt_outs": 0,
        "audit_records": 0,
        "run_outputs": len(CANARY_PLACES),
    }
    assert export["runs"]["location"] == runs.location
    assert {o["path"] for o in export["runs"]["outputs"]} == set(CANARY_PLACES)
    assert export["registry"] is None
    json.dumps(export)  # JSON-ready
    access = AuditTrail(governance_db).records(event="subject.access")[-1]
    assert access.payload is not None
    assert access.payload["counts"]["run_outputs"] == len(CANARY_PLACES)

    result = rights.delete(CANARY, actor="dpo", reason="ticket 45", runs=runs)
    assert result["erased"] == {
        "review_items": 1,
        "opt_outs": 0,
        "audit_payloads": 1,
        "run_outputs": len(CANARY_PLACES),
    }
    assert holding(runs_root, CANARY) == []
    assert cells_holding(governance_db, CANARY) == []  # the tombstone and the access record hold no id
    tombstone = AuditTrail(governance_db).records(event="subject.erased")[-1]
    assert tombstone.payload is not None
    assert tombstone.payload["erased"]["run_outputs"] == len(CANARY_PLACES)
    assert AuditTrail(governance_db).verify().ok
    with pytest.raises(GovernanceError) as e:
        rights.access(CANARY, actor="dpo", runs=runs)
    assert e.value.http_status == 404
    with pytest.raises(GovernanceError) as e:
        rights.delete(CANARY, actor="dpo", reason="ticket 45", runs=runs)
    assert e.value.http_status == 404


def test_the_runs_alone_make_a_customer_known(governance_db: Any, runs_root: Path) -> None:
    """Held nowhere in the database but in the runs: access exports it, delete erases it (not a 404)."""
    from engage.governance import SubjectRights

    rights = SubjectRights(governance_db)
    runs = outputs(runs_root)
    assert rights.access(CANARY, actor="dpo", runs=runs)["counts"]["run_outputs"] == len(CANARY_PLACES)
    erased = rights.delete(CANARY, actor="dpo", reason="ticket 46", runs=runs)["erased"]
    assert erased["run_outputs"] == len(CANARY_PLACES)
    assert holding(runs_root, CANARY) == []


# --- the real CLI and the real API server ------------------------------------------------------------------


def test_the_cli_searches_and_erases_the_runs(runs_root: Path, tmp_path: Path) -> None:
    db = ("--db", f"sqlite:///{tmp_path}/governance.db")
    out = tmp_path / "export.json"
    exported = engage("subject", "access", CANARY, "--runs", str(runs_root), *db, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(out.read_text())["counts"]["run_outputs"] == len(CANARY_PLACES)
    assert CANARY not in exported.stderr

    erased = engage(
        "subject", "delete", CANARY, "--reason", "ticket 47", "--runs", str(runs_root), *db, "--json"
    )
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["erased"]["run_outputs"] == len(CANARY_PLACES)
    assert CANARY not in erased.stdout + erased.stderr
    assert holding(runs_root, CANARY) == []
    again = engage("subject", "delete", CANARY, "--reason", "ticket 47", "--runs", str(runs_root), *db)
    assert again.returncode == 2
    assert CANARY not in again.stdout + again.stderr


def test_the_api_server_erases_the_runs_it_is_configured_with(
    governance_db: Any, governance_url: str, runs_root: Path, tmp_path: Path
) -> None:
    import httpx

    admin = bearer(make_token(governance_db, "admin"))
    with (
        serve(governance_url, tmp_path, "--runs", str(runs_root)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        export = http.get(f"/v1/subjects/{CANARY}", headers=admin)
        assert export.status_code == 200, export.text
        assert {o["path"] for o in export.json()["runs"]["outputs"]} == set(CANARY_PLACES)
        erased = http.request("DELETE", f"/v1/subjects/{CANARY}", headers=admin, json={"reason": "ticket 48"})
        assert erased.status_code == 200, erased.text
        assert erased.json()["erased"]["run_outputs"] == len(CANARY_PLACES)
        again = http.request("DELETE", f"/v1/subjects/{CANARY}", headers=admin, json={"reason": "ticket 48"})
        assert again.status_code == 404
    assert holding(runs_root, CANARY) == []
    assert CANARY not in server.log.read_text()


# --- a real pipeline run -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_pipeline_run_is_erased_everywhere(pipeline_workspace: dict[str, Any], tmp_path: Path) -> None:
    """A copy of the session's pipeline run (the shared run is never touched): the customer the explain
    step explained is found in the input's copy, the validated table, the explanation folder and the
    step records, and after the CLI's erasure no byte of the run names them."""
    job = pipeline_workspace["first"].job_dir
    assert job is not None
    root = tmp_path / "runs"
    shutil.copytree(job, root / job.name)
    step = json.loads((root / job.name / "explain" / "step").read_text())
    customer = step["customer"]
    counted = pq.read_table(root / job.name / "load-data" / "data")
    mine = int(pc.sum(pc.equal(counted.column("customer_id"), customer)).as_py())

    mentions = outputs(root).customer_mentions(customer)
    found = {(m["task"], m["output"], m["kind"]) for m in mentions}
    assert {("load-data", "data", "parquet"), ("explain", "explanations", "folder"), ("explain", "step", "json"),
            ("record-outcome", "outcome", "json")} <= found  # fmt: skip
    assert ("validate", "remediated", "parquet") in found or ("validate", "report", "parquet") in found

    db = ("--db", f"sqlite:///{tmp_path}/governance.db")
    erased = engage(
        "subject", "delete", customer, "--reason", "ticket 49", "--runs", str(root), *db, "--json"
    )
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["erased"]["run_outputs"] == len(mentions)
    assert holding(root, customer) == []
    after = pq.read_table(root / job.name / "load-data" / "data")
    assert after.schema.equals(counted.schema, check_metadata=True)
    assert after.num_rows == counted.num_rows - mine
    assert after.equals(without(counted, customer))
    assert (
        engage("subject", "delete", customer, "--reason", "ticket 49", "--runs", str(root), *db).returncode
        == 2
    )


# --- an object store ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Any:
    """moto's S3 server on a free loopback port with one bucket (as tests/integration/test_registry_s3.py)."""
    from tests.cloudwatch_support import moto_server
    from tests.integration.test_registry_s3 import BUCKET, _client

    with moto_server() as url:
        _client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.mark.slow
def test_runs_on_an_object_store_are_searched_and_erased(
    s3_endpoint: str, runs_root: Path, tmp_path: Path
) -> None:
    import s3fs  # type: ignore[import-untyped]

    from engage.contract import load_contract
    from engage.governance import RunOutputs
    from tests.integration.test_registry_s3 import BUCKET

    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    for path in sorted(p for p in runs_root.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{BUCKET}/pipeline-root/{path.relative_to(runs_root).as_posix()}")
    runs = RunOutputs(f"s3://{BUCKET}/pipeline-root", load_contract(), storage_options=options)
    assert runs.location == f"s3://{BUCKET}/pipeline-root"
    assert {m["path"]: (m["kind"], m["rows"]) for m in runs.customer_mentions(CANARY)} == CANARY_PLACES

    assert runs.mask_customer(CANARY) == len(CANARY_PLACES)
    assert runs.customer_mentions(CANARY) == []
    after = tmp_path / "after"
    fs.invalidate_cache()
    for key in fs.find(f"{BUCKET}/pipeline-root"):
        target = after / key.removeprefix(f"{BUCKET}/pipeline-root/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    assert holding(after, CANARY) == []
    assert not (after / RUN_B / "explain" / "explanations" / "customers" / CANARY).exists()
    assert (after / RUN_B / "explain" / "explanations" / "customers" / OTHER / "explanation.json").is_file()
    table = pq.read_table(after / RUN_A / "load-data" / "data")
    assert table.equals(without(pq.read_table(runs_root / RUN_A / "load-data" / "data"), CANARY))
    assert sorted(p.name for p in (after / ".cache").iterdir()) == ["c1.json"]
