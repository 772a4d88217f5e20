"""``score_table``: every customer of a table scored by one registry version, in-process or on Dask.

The order of work, so that a bad input costs nothing: the registry version is resolved, fetched and its
signature verified first (a missing version is a :class:`RegistryError` before any row is read), then the
table is planned into parts (:mod:`._parts`), each part read, checked (:mod:`._checks`), scored
(:mod:`._scorer`) and written; the run's files are committed only when every part is done
(:mod:`._output`), and the report last.

A part whose file cannot be read or whose schema cannot hold a valid row is quarantined whole, with the
reason; the run goes on with the others and its report names them. The verdict is ``pass`` (nothing
rejected), ``warn`` (some rows rejected, at most ``max_rejected`` of them) or ``fail`` (more, or no row
scored): on ``fail`` the scores are not committed (the quarantine and the report are, to say why).

Engines: ``local`` runs the parts one after the other in this process (memory: one part at a time);
``dask`` maps the same function over the parts as the partitions of a ``dask.dataframe``
(``from_map``): each worker reads, checks, scores and stages its part, only a one-row summary per part
returns to this process, which then streams the staged parts into the final files in order (bytes, one
row group at a time). A worker lost mid-run: Dask runs its parts again elsewhere (a staged part is
written whole or not at all); if the run still fails, the staging is removed and nothing is committed.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engage.errors import ConfigError, DataError

from ._checks import check_frame, schema_problem
from ._output import Destination, ParquetSink
from ._parts import Part, data_sha256, plan_parts, read_part
from ._scorer import BatchScorer

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from engage.contract import Contract
    from engage.distributed import DaskSettings

__all__ = ["PartResult", "ScoreReport", "score_table"]

log = logging.getLogger("engage.scoring")

#: default largest share of rows that may be rejected before the run fails
MAX_REJECTED = 0.05


@dataclass
class PartResult:
    """What one part gave: counts, the reasons of its rejected rows, and (in-process) its tables."""

    index: int
    path: str
    rows: int = 0
    scored: int = 0
    quarantined: int = 0
    #: why the whole part was quarantined (unreadable, or a schema no row can pass), else None
    schema: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0
    scores: Any = None
    quarantine: Any = None


@dataclass
class ScoreReport:
    """The run's report (``_reports/run_date=….json``): what was scored, what was not and why."""

    verdict: str
    run_date: str
    model_version: str
    registry: str
    ref: str
    data_sha256: str
    source: str
    engine: str
    rows: int
    scored: int
    quarantined: int
    max_rejected: float
    parts: int
    quarantined_parts: list[dict[str, Any]]
    reasons: dict[str, int]
    notes: list[str]
    ignored_columns: list[str]
    files: dict[str, str]
    seconds: float
    started_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line(self) -> str:
        share = self.quarantined / self.rows if self.rows else 0.0
        return (
            f"score: {self.verdict}: {self.scored:,} of {self.rows:,} rows scored by {self.model_version[:19]} "
            f"in {self.seconds:.1f} s ({self.engine}); {self.quarantined:,} quarantined ({share:.2%})"
            + (f", {len(self.quarantined_parts)} whole part(s)" if self.quarantined_parts else "")
        )


# ------------------------------------------------------------------------------------------- schemas
def scores_schema(scorer: BatchScorer) -> pa.Schema:
    import pyarrow as pa

    fields = []
    if scorer.id_column:
        fields.append(pa.field(scorer.id_column, pa.string()))
    fields += [pa.field(out, pa.float64()) for out in scorer.outputs.values()]
    if scorer.reason_head is not None:
        reason = pa.struct([("feature", pa.string()), ("contribution", pa.float32())])
        fields.append(pa.field("reasons", pa.list_(reason)))
    return pa.schema(fields)


def quarantine_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("part", pa.int32()),
            ("source", pa.string()),
            ("row", pa.int64()),
            ("id", pa.string()),
            ("reason", pa.string()),
            ("field", pa.string()),
            ("error", pa.string()),
            ("record", pa.string()),
        ]
    )


# ------------------------------------------------------------------------------------------- one part
def score_part(part: Part, scorer: BatchScorer, *, staging: str | None = None) -> PartResult:
    """Read, check, score ``part``; its tables in the result, or (``staging``) written there as
    ``scores/part-NNNNN.parquet`` and ``quarantine/part-NNNNN.parquet`` (each whole or absent)."""
    import pyarrow as pa

    started = time.perf_counter()
    result = PartResult(part.index, part.path)
    try:
        frame, names, ids = read_part(part, scorer.columns, key=scorer.id_column)
    except DataError as e:
        result.schema = f"unreadable: {e}"
        result.rows = part.rows or 0
        result.quarantined = result.rows
        result.reasons = {"unreadable": 1}
        result.quarantine = _quarantine_whole(part, None, result.schema, None)
        return _finish(result, started, staging)
    result.rows = len(frame)
    result.ignored_columns = sorted(c for c in names if c not in scorer.contract.columns)
    problem = schema_problem(frame, scorer.encoder)
    if problem is not None:
        result.schema = problem
        result.quarantined = len(frame)
        result.reasons = {"schema": len(frame)}
        result.quarantine = _quarantine_whole(part, frame, problem, ids)
        return _finish(result, started, staging)
    checked = check_frame(frame, scorer.encoder)
    accepted = frame.loc[checked.accepted] if len(checked.reasons) else frame
    if ids is not None and checked.reasons:
        ids_accepted: pa.Array | None = ids.filter(pa.array(checked.accepted))
    else:
        ids_accepted = ids
    scores = scorer.score(checked.X, accepted)
    result.notes = scores.notes
    result.scored = len(checked.X)
    result.quarantined = len(checked.reasons)
    result.reasons = dict(Counter(r[0] for r in checked.reasons))
    result.scores = _scores_table(len(accepted), ids_accepted, scores, scorer)
    if checked.reasons:
        rejected_ids = ids.take(pa.array(checked.rejected)) if ids is not None else None
        result.quarantine = _quarantine_rows(part, frame, checked.rejected, checked.reasons, rejected_ids)
    return _finish(result, started, staging)


def _finish(result: PartResult, started: float, staging: str | None) -> PartResult:
    if staging is not None:
        for kind in ("scores", "quarantine"):
            table = getattr(result, kind)
            if table is not None and table.num_rows:
                _stage(table, f"{staging}/{kind}/part-{result.index:05d}.parquet")
            setattr(result, kind, None)
    result.seconds = time.perf_counter() - started
    return result


def _stage(table: pa.Table, url: str) -> None:
    """Write ``table`` to ``url`` whole or not at all (a temporary name, then a move)."""
    import pyarrow.parquet as pq
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    fs, path = url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f)
    fs.mv(tmp, path)


def _scores_table(rows: int, ids: pa.Array | None, scores: Any, scorer: BatchScorer) -> pa.Table:
    import pyarrow as pa

    columns: dict[str, Any] = {}
    if scorer.id_column:
        columns[scorer.id_column] = ids if ids is not None else pa.nulls(rows, pa.string())
    for output in scorer.outputs.values():
        columns[output] = pa.array(scores.values[output], pa.float64())
    if scorer.reason_head is not None:
        k = 0 if scores.reason_index is None else scores.reason_index.shape[1]
        names = pa.array(scorer.encoder.names, pa.string())
        index = scores.reason_index.ravel() if scores.reason_index is not None else np.empty(0, np.int32)
        values = scores.reason_value.ravel() if scores.reason_value is not None else np.empty(0, np.float32)
        struct = pa.StructArray.from_arrays(
            [names.take(pa.array(index)), pa.array(values, pa.float32())], names=["feature", "contribution"]
        )
        offsets = pa.array(np.arange(0, rows * k + 1, k if k else 1)[: rows + 1], pa.int32())
        columns["reasons"] = pa.ListArray.from_arrays(offsets, struct)
    return pa.table(columns, schema=scores_schema(scorer))


def _records(frame: pd.DataFrame) -> list[str]:
    text = frame.to_json(orient="records", lines=True, date_format="iso", default_handler=str)
    return text.splitlines() if text else []


def _quarantine_rows(
    part: Part,
    frame: pd.DataFrame,
    rows: np.ndarray[Any, Any],
    reasons: list[tuple[str, str, str]],
    ids: pa.Array | None,
) -> pa.Table:
    import pyarrow as pa

    rejected = frame.iloc[rows]
    return pa.table(
        {
            "part": pa.array([part.index] * len(rows), pa.int32()),
            "source": pa.array([part.path] * len(rows), pa.string()),
            "row": pa.array(rows + part.offset, pa.int64()),
            "id": ids if ids is not None else pa.nulls(len(rows), pa.string()),
            "reason": pa.array([r[0] for r in reasons], pa.string()),
            "field": pa.array([r[1] for r in reasons], pa.string()),
            "error": pa.array([r[2] for r in reasons], pa.string()),
            "record": pa.array(_records(rejected), pa.string()),
        },
        schema=quarantine_schema(),
    )


def _quarantine_whole(part: Part, frame: pd.DataFrame | None, problem: str, ids: pa.Array | None) -> pa.Table:
    import pyarrow as pa

    if frame is None:  # unreadable: one row standing for the part
        return pa.table(
            {
                "part": [part.index], "source": [part.path], "row": pa.array([None], pa.int64()),
                "id": pa.array([None], pa.string()), "reason": ["unreadable"], "field": pa.array([None], pa.string()),
                "error": [problem], "record": pa.array([None], pa.string()),
            },
            schema=quarantine_schema(),
        )  # fmt: skip
    n = len(frame)
    return _quarantine_rows(part, frame, np.arange(n), [("schema", "", problem)] * n, ids)


# ------------------------------------------------------------------------------------------- workers
#: the scorers a Dask worker process has built: (version, reasons, reason head) -> scorer
_SCORERS: dict[tuple[str, int, str | None], BatchScorer] = {}


def _worker_scorer(
    version: str,
    files: tuple[tuple[str, bytes], ...],
    contract: Contract,
    reasons: int,
    reason_head: str | None,
) -> BatchScorer:
    """The scorer on a Dask worker, built once per version from the bundle's files (checked against their
    manifest again on load; never unpickled)."""
    key = (version, reasons, reason_head)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = _build_scorer(version, files, contract, reasons, reason_head)
    return _SCORERS[key]


def _build_scorer(
    version: str,
    files: tuple[tuple[str, bytes], ...],
    contract: Contract,
    reasons: int,
    reason_head: str | None,
) -> BatchScorer:
    import shutil

    from engage.model import load_bundle

    folder = Path(tempfile.mkdtemp(prefix="engage-bundle-"))
    for name, data in files:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    try:
        bundle = load_bundle(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if bundle.version != version:
        raise DataError(f"the model files sent to this worker are not version {version}")
    return BatchScorer(bundle, contract, reasons=reasons, reason_head=reason_head)


def _score_on_worker(part: Part, *, spec: dict[str, Any], staging: str) -> pd.DataFrame:
    import pandas as pd

    scorer = _worker_scorer(**spec)
    done = score_part(part, scorer, staging=staging)
    row = {k: v for k, v in asdict(done).items() if k not in ("scores", "quarantine")}
    row["summary"] = json.dumps(row)
    return pd.DataFrame({"index": [done.index], "summary": [row["summary"]]})


def _bundle_files(folder: Path) -> tuple[tuple[str, bytes], ...]:
    return tuple(
        (p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()
    )


# ------------------------------------------------------------------------------------------- the run
def score_table(
    source: str,
    out_uri: str,
    *,
    registry: str,
    ref: str = "production",
    model: str = "customers",
    contract: Contract | None = None,
    run_date: date | None = None,
    engine: str = "local",
    dask: DaskSettings | None = None,
    reasons: int = 0,
    reason_head: str | None = None,
    max_rejected: float = MAX_REJECTED,
    partition_rows: int | None = None,
) -> ScoreReport:
    """Score every row of ``source`` with registry version ``ref``; write under ``out_uri`` (see
    :mod:`._output`). Raises :class:`RegistryError` / signing errors before reading a row when the version
    is missing or untrusted, :class:`DataError` when the table is missing, :class:`StorageError` when the
    output cannot be written (nothing committed)."""
    from engage.contract import load_contract
    from engage.distributed import DaskSettings
    from engage.model import load_bundle
    from engage.registry import Registry

    if engine not in ("local", "dask"):
        raise ConfigError(f"--engine {engine}: expected local or dask")
    if not 0.0 <= max_rejected <= 1.0:
        raise ConfigError(f"--max-rejected {max_rejected}: expected a share between 0 and 1")
    started, started_at = time.perf_counter(), datetime.now(UTC)
    run_date = run_date or started_at.date()
    spec = contract or load_contract(None)
    settings = dask or DaskSettings()
    reg = Registry(registry, model=model)
    version = reg.get(ref)  # a missing version or alias: RegistryError, before any work
    with tempfile.TemporaryDirectory(prefix="engage-score-") as tmp:
        bundle_dir = reg.fetch(version.id, Path(tmp) / "model")  # signature and manifest verified
        bundle = load_bundle(bundle_dir)
        scorer = BatchScorer(bundle, spec, reasons=reasons, reason_head=reason_head)
        files = _bundle_files(bundle_dir)
    parts = plan_parts(source, partition_rows or settings.partition_rows)
    digest = data_sha256(source)
    dest = Destination(out_uri, run_date)
    metadata = {
        "model_version": version.id, "registry": reg.location, "ref": ref, "data_sha256": digest,
        "contract": spec.contract, "run_date": run_date.isoformat(), "scored_at": started_at.isoformat(),
        "source": source, "engine": engine, "reason_head": scorer.reason_head,
    }  # fmt: skip
    run_id = f"{started_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    try:
        with dest.local_temp() as tmp_dir:
            sinks = _Sinks(tmp_dir, scorer, metadata)
            if engine == "local":
                results = []
                for part in parts:
                    done = score_part(part, scorer, staging=None)
                    sinks.write(done.scores, done.quarantine)
                    done.scores = done.quarantine = None
                    results.append(done)
            else:
                worker_spec = {
                    "version": version.id, "files": files, "contract": spec, "reasons": reasons,
                    "reason_head": scorer.reason_head,
                }  # fmt: skip
                results = _run_dask(parts, worker_spec, dest.url("_staging", run_id), settings)
                _merge_staged(dest, run_id, len(parts), sinks)
            sinks.close()
            report = _report(results, metadata, max_rejected, len(parts))
            files_out: dict[str, str] = {}
            if report.verdict != "fail" and sinks.scores.rows:
                files_out["scores"] = dest.commit_file(sinks.scores.path, dest.scores)
            if sinks.quarantine.rows:
                files_out["quarantine"] = dest.commit_file(sinks.quarantine.path, dest.quarantine)
            report.files = {**files_out, "report": dest.url(*dest.report)}
            report.seconds = time.perf_counter() - started
            dest.write_json(dest.report, report.to_json())
    finally:
        dest.remove_staging(run_id)
    log.info("%s", report.line)
    return report


class _Sinks:
    def __init__(self, folder: Path, scorer: BatchScorer, metadata: dict[str, Any]) -> None:
        self.scores = ParquetSink(folder / "scores.parquet", scores_schema(scorer), metadata)
        self.quarantine = ParquetSink(folder / "quarantine.parquet", quarantine_schema(), metadata)

    def write(self, scores: Any, quarantine: Any) -> None:
        self.scores.write(scores)
        self.quarantine.write(quarantine)

    def close(self) -> None:
        self.scores.close()
        self.quarantine.close()


def _run_dask(
    parts: list[Part], spec: dict[str, Any], staging: str, settings: DaskSettings
) -> list[PartResult]:
    import dask.dataframe as dd
    import pandas as pd

    from engage.distributed import dask_client

    meta = pd.DataFrame({"index": pd.Series(dtype="int64"), "summary": pd.Series(dtype="object")})
    with dask_client(settings) as client:
        frame = dd.from_map(
            _score_on_worker, parts, spec=spec, staging=staging, meta=meta, enforce_metadata=False,
            label="engage-score",
        )  # fmt: skip
        summaries = client.compute(frame).result()
    results = []
    for text in summaries.sort_values("index")["summary"]:
        data = json.loads(text)
        results.append(PartResult(**{k: v for k, v in data.items() if k in PartResult.__dataclass_fields__}))
    return results


def _merge_staged(dest: Destination, run_id: str, parts: int, sinks: _Sinks) -> None:
    """Stream the staged parts into the final files, in part order, one row group at a time."""
    import pyarrow.parquet as pq

    fs = dest.fs
    for kind, sink in (("scores", sinks.scores), ("quarantine", sinks.quarantine)):
        for index in range(parts):
            path = f"{dest.staging(run_id)}/{kind}/part-{index:05d}.parquet"
            if not fs.exists(path):
                continue
            with fs.open(path, "rb") as f:
                staged = pq.ParquetFile(f)
                for g in range(staged.num_row_groups):
                    sink.write(staged.read_row_group(g))


def _report(
    results: list[PartResult], metadata: dict[str, Any], max_rejected: float, parts: int
) -> ScoreReport:
    """The verdict and counts of a run whose parts gave ``results`` (its ``seconds`` are set when the
    files are committed)."""
    rows = sum(r.rows for r in results)
    scored = sum(r.scored for r in results)
    quarantined = sum(r.quarantined for r in results)
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.reasons)
    whole = [
        {"part": r.index, "source": r.path, "rows": r.rows, "reason": r.schema} for r in results if r.schema
    ]
    share = quarantined / rows if rows else 1.0
    if scored == 0 or share > max_rejected:
        verdict = "fail"
    elif quarantined or whole:
        verdict = "warn"
    else:
        verdict = "pass"
    notes = sorted({n for r in results for n in r.notes})
    if verdict == "fail":
        notes.insert(
            0,
            f"nothing committed: {quarantined:,} of {rows:,} rows rejected ({share:.2%}), over the limit of "
            f"{max_rejected:.2%} (--max-rejected)"
            if scored
            else "nothing committed: no row could be scored",
        )
    return ScoreReport(
        verdict=verdict, run_date=metadata["run_date"], model_version=metadata["model_version"],
        registry=metadata["registry"], ref=metadata["ref"], data_sha256=metadata["data_sha256"],
        source=metadata["source"], engine=metadata["engine"], rows=rows, scored=scored,
        quarantined=quarantined, max_rejected=max_rejected, parts=parts, quarantined_parts=whole,
        reasons=dict(reasons), notes=notes, ignored_columns=sorted({c for r in results for c in r.ignored_columns}),
        files={}, seconds=0.0, started_at=metadata["scored_at"],
    )  # fmt: skip
