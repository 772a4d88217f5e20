"""The quality gate's row-level checks on a Dask dataframe: counted per partition, summed.

Each partition is conformed and judged by the in-process gate's own code (:func:`engage.tables.conform`,
the schema checks of :mod:`engage.quality._validate`, the rule functions of :mod:`engage.quality._checks`)
inside ``map_partitions``; what comes back to the client is one small row of counts per partition. Keys
(``unique`` rules) are counted across partitions with a distributed ``drop_duplicates``. So the figures
are the in-process gate's on the same table:

* schema: wrong types, empties in non-nullable columns, values outside the declared bounds, undeclared
  categories (``schema.<column>.type | not_null | bounds | categories``);
* row rules (compare, range, pattern, sum, in-set, country code, the row half of no-leakage) and
  unique keys: rows that break them;
* null rate and label balance (sums of empties / positives), freshness (the newest event time) and
  prohibited features (the contract alone).

The checks that need the whole table at once (zero variance, proxy association) are not run here:
they are listed in :attr:`DistributedQuality.not_run` and stay with the in-process gate (on a sample).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from engage.contract import Contract, Severity, Timing
from engage.contract._model import (
    CompareCheck,
    CountryCodeCheck,
    FreshnessCheck,
    InSetCheck,
    LabelBalanceCheck,
    NoLeakageCheck,
    NoProhibitedFeaturesCheck,
    NullRateCheck,
    PatternCheck,
    RangeCheck,
    SumEqualsCheck,
    UniqueCheck,
)
from engage.errors import SchemaError

from ._frame import conformed

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

__all__ = ["CheckCount", "DistributedQuality", "check_distributed"]

#: rules judged row by row: a partition's offending rows are its share of the table's
_ROW_RULES = (
    CompareCheck,
    RangeCheck,
    PatternCheck,
    SumEqualsCheck,
    InSetCheck,
    CountryCodeCheck,
    NoLeakageCheck,
)
#: why a rule is not run on the engine
_NOT_RUN = "table-level: needs every row at once (the in-process gate runs it, on a sample)"


@dataclass(frozen=True)
class CheckCount:
    """One check over the whole table: failing rows (row checks) or the observed figure."""

    id: str
    kind: str
    severity: Severity
    passed: bool
    failing_rows: int | None
    observed: float | None


@dataclass
class DistributedQuality:
    """The verdict (``fail`` when a critical check failed) and every check's figures."""

    verdict: Literal["pass", "fail"]
    rows: int
    partitions: int
    checks: dict[str, CheckCount]
    not_run: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def critical_failures(self) -> list[CheckCount]:
        return [c for c in self.checks.values() if not c.passed and c.severity is Severity.critical]


def check_distributed(
    ddf: dd.DataFrame, contract: Contract, client: Client, *, now: datetime | None = None
) -> DistributedQuality:
    """Judge every partition of ``ddf`` (raw, as read) against ``contract`` on ``client``'s cluster.

    :class:`SchemaError` (naming the partition) when a partition lacks contract columns."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    probe = _partition_counts(ddf._meta.reindex(pd.RangeIndex(1)), contract, now)  # the columns
    counts = ddf.map_partitions(_partition_counts, contract, now, meta=probe.iloc[:0])
    uniques = [(r, r.check) for r in contract.rules if isinstance(r.check, UniqueCheck)]
    distinct: list[Any] = []
    if uniques:
        table = conformed(ddf, contract)
        split_out = max(1, ddf.npartitions // 4)
        distinct = [
            table[list(check.columns)].drop_duplicates(split_out=split_out).shape[0] for _, check in uniques
        ]
    per_partition, *n_distinct = client.compute([counts, *distinct], sync=True)
    totals = per_partition.sum(numeric_only=True)
    rows = int(totals["rows"])
    checks = _schema_counts(contract, per_partition, totals)
    checks.update(_rule_counts(contract, per_partition, totals, rows, now))
    for (rule, _), n in zip(uniques, n_distinct, strict=True):
        dup = rows - int(n)
        checks[rule.id] = CheckCount(rule.id, rule.check.kind, rule.severity, dup == 0, dup, float(dup))
    not_run = {r.id: _NOT_RUN for r in contract.rules if r.id not in checks}
    failed = any(not c.passed and c.severity is Severity.critical for c in checks.values())
    return DistributedQuality(
        verdict="fail" if failed else "pass",
        rows=rows,
        partitions=ddf.npartitions,
        checks=checks,
        not_run=not_run,
        seconds=time.perf_counter() - started,
    )


def _partition_counts(
    part: pd.DataFrame, contract: Contract, now: datetime, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One row of counts for one partition: rows, each schema check's and row rule's offending rows,
    the empties and positives the table-level rates need, and the newest event time (epoch seconds)."""
    from engage.quality._checks import Context, run_check
    from engage.quality._validate import _schema_checks
    from engage.tables import conform

    where = f"partition {partition_info['number']}: " if partition_info else ""
    try:
        table = conform(part, contract) if len(part) else None
    except SchemaError as e:
        raise SchemaError(f"{where}{e}") from None
    if table is None:  # an empty partition counts nothing
        probe = _partition_counts(part.reindex(pd.RangeIndex(1)), contract, now)
        return pd.DataFrame(0.0, index=[0], columns=probe.columns).assign(**_newest_nan(probe))
    frame = table.frame
    row: dict[str, float] = {"rows": float(len(frame))}
    for name, spec in contract.columns.items():
        for check_id, _, _, _, finding in _schema_checks(table, name, spec):
            row[check_id] = float(finding.observed or 0.0)
    ctx = Context(frame=frame, contract=contract, now=now)
    for rule in contract.rules:
        check = rule.check
        if isinstance(check, _ROW_RULES):
            mask = run_check(check, ctx).mask
            row[rule.id] = float(mask.sum()) if mask is not None else 0.0
        elif isinstance(check, NullRateCheck):
            columns = check.columns if check.columns is not None else contract.critical_features
            for c in columns:
                row[f"{rule.id}|null|{c}"] = float(frame[c].isna().sum())
        elif isinstance(check, LabelBalanceCheck):
            target = contract.targets[check.target]
            labels = frame[target.column].dropna()
            row[f"{rule.id}|labelled"] = float(len(labels))
            row[f"{rule.id}|positive"] = float((labels == target.positive).sum())
        elif isinstance(check, FreshnessCheck):
            column = _freshness_column(check, contract)
            newest = pd.to_datetime(frame[column], utc=True).max()
            row[f"{rule.id}|newest"] = np.nan if pd.isna(newest) else newest.timestamp()
    return pd.DataFrame([row], dtype="float64")


def _newest_nan(probe: pd.DataFrame) -> dict[str, float]:
    return {c: np.nan for c in probe.columns if c.endswith("|newest")}


def _freshness_column(check: FreshnessCheck, contract: Contract) -> str:
    event = contract.event_time
    return check.column or (event.column if event else "")


def _schema_counts(
    contract: Contract, per_partition: pd.DataFrame, totals: pd.Series
) -> dict[str, CheckCount]:
    out: dict[str, CheckCount] = {}
    for name in contract.columns:
        for kind in ("type", "not_null", "bounds", "categories"):
            check_id = f"schema.{name}.{kind}"
            if check_id in per_partition.columns:
                n = int(totals[check_id])
                out[check_id] = CheckCount(check_id, kind, Severity.critical, n == 0, n, float(n))
    return out


def _rule_counts(
    contract: Contract, per_partition: pd.DataFrame, totals: pd.Series, rows: int, now: datetime
) -> dict[str, CheckCount]:
    from engage.quality._checks import Context, run_check

    out: dict[str, CheckCount] = {}
    for rule in contract.rules:
        check = rule.check
        passed: bool
        failing: int | None = None
        observed: float | None
        if isinstance(check, NoLeakageCheck):
            # as engage.quality._checks: features known only after the label window, plus the rows
            late = [f for f in contract.features if contract.columns[f].timing is Timing.after_label_window]
            failing = int(totals[rule.id])
            observed = float(len(late) + failing)
            passed = observed == 0
        elif isinstance(check, _ROW_RULES):
            failing = int(totals[rule.id])
            observed, passed = float(failing), failing == 0
        elif isinstance(check, NullRateCheck):
            keys = [k for k in per_partition.columns if k.startswith(f"{rule.id}|null|")]
            rates = [float(totals[k]) / max(rows, 1) for k in keys]
            observed = max(rates, default=0.0)
            passed = all(r <= check.max for r in rates)
        elif isinstance(check, LabelBalanceCheck):
            labelled = float(totals[f"{rule.id}|labelled"])
            observed = float(totals[f"{rule.id}|positive"]) / labelled if labelled else None
            passed = observed is not None and check.min <= observed <= check.max
        elif isinstance(check, FreshnessCheck):
            newest = per_partition[f"{rule.id}|newest"].max()
            column = _freshness_column(check, contract)
            stamp = pd.Series([pd.NaT if pd.isna(newest) else pd.Timestamp(newest, unit="s", tz="UTC")])
            finding = run_check(check, Context(pd.DataFrame({column: stamp}), contract, now))
            observed, passed = finding.observed, finding.passed
        elif isinstance(check, NoProhibitedFeaturesCheck):
            finding = run_check(check, Context(pd.DataFrame(), contract, now))
            observed, passed = finding.observed, finding.passed
        else:
            continue
        out[rule.id] = CheckCount(rule.id, check.kind, rule.severity, passed, failing, observed)
    return out
