"""The live report: logged predictions joined with the outcomes that came later, judged by the policy.

Join rule: each outcome row (customer id, observed time, outcome columns named as the contract's target
columns) takes the customer's latest prediction at or before its observed time (``pandas.merge_asof``,
backward, by customer id); an outcome with no earlier prediction joins nothing.

Per head: live accuracy with the offline metric functions (:func:`engage.training.head_metrics`) judged
by the policy's head rules (:func:`engage.policy.evaluate`); live fairness by protected group with the
fairness gate's own measure and rules (same figures, same thresholds), crossed only when a figure's whole
95 % bootstrap interval is, on groups of at least the policy's ``min_group_size`` labelled rows (never
scaled down: a small window waits for labels; docs/feedback.md says why); prediction
drift as the population stability index (PSI, ten reference-decile bins) against the training
reference's predictions or, without one, the first half of the window (in time) against the second;
business figures (mean prediction vs mean outcome: predicted vs realised churn rate, predicted vs realised
LTV); coverage (share of logged predictions with an outcome). Verdict ``fail`` when any rule is crossed,
``no_labels`` when no prediction has an outcome yet (drift is still judged), else ``pass``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engage.errors import DataError, SchemaError
from engage.policy import PromotionPolicy, RuleOutcome, evaluate, load_policy

from ._store import BASE_COLUMNS, PREDICTION_PREFIX

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from engage.contract import Contract
    from engage.model._heads import Head

__all__ = [
    "MIN_LABELLED",
    "OUTCOME_TIME",
    "PSI_THRESHOLD",
    "LiveHead",
    "LiveReport",
    "LiveRule",
    "PredictionDrift",
    "live_report",
    "psi",
    "write_report",
]

#: the outcomes table's column that says when each outcome was observed
OUTCOME_TIME = "observed_at"
#: a head's prediction distribution has drifted when its PSI against the reference exceeds this (the
#: usual reading: < 0.1 stable, 0.1-0.2 some shift, > 0.2 a significant shift)
PSI_THRESHOLD = 0.2
PSI_BINS = 10
#: fewest labelled rows (and, for a classification head, both classes) for a head's live figures
MIN_LABELLED = 30
#: fewest predictions on each side for a drift test: PSI on k bins of two same-distribution samples of
#: n and m rows is about (k - 1)(1/n + 1/m) by chance alone (0.036 at 500 each, 0.18 at 100 each)
MIN_DRIFT_ROWS = 500
#: the section names of the live rules (what the retraining trigger reads)
SECTIONS = ("live_accuracy", "live_fairness", "prediction_drift")
#: fewest bootstrap replicates for an interval (the gate's percentile interval needs ten finite ones)
MIN_REPLICATES = 10
#: live fairness is measured on at most this many labelled rows per head (a seeded sample beyond): the
#: bootstrap's cost grows with the rows (about 1 s per 100,000 rows per head at 200 replicates)
LIVE_FAIRNESS_ROWS = 200_000

Verdict = Literal["pass", "fail", "no_labels"]


class LiveRule(RuleOutcome):
    """A live rule's outcome; a live fairness rule also carries the 95 % bootstrap interval of its
    figure (``observed`` is the point estimate; the rule is crossed only when the whole interval is)."""

    interval: tuple[float, float] | None = None


@dataclass
class PredictionDrift:
    """PSI (the judged figure) and the KS test of one head's predictions against a reference."""

    psi: float
    ks: float
    ks_p_value: float
    threshold: float
    reference: str
    reference_rows: int
    current_rows: int

    @property
    def drifted(self) -> bool:
        return self.psi > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "test": "psi",
            "psi": self.psi,
            "threshold": self.threshold,
            "drifted": self.drifted,
            "ks_statistic": self.ks,
            "ks_p_value": self.ks_p_value,
            "reference": self.reference,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


@dataclass
class LiveHead:
    head: str
    task: str
    output: str
    #: logged predictions of this head, and those joined with an outcome
    predictions: int
    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    #: attribute -> gap figure -> value (the gate's summary figures)
    fairness: dict[str, dict[str, float]] = field(default_factory=dict)
    drift: PredictionDrift | None = None
    #: predicted_mean_all (every prediction), predicted_mean and realised_mean (the labelled rows)
    business: dict[str, float | None] = field(default_factory=dict)
    #: a classification head's label-free estimate (CBPE) over every logged prediction, and, once labels
    #: came, each figure beside the realised one (``versus_realised``)
    estimated: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        return self.labelled / self.predictions if self.predictions else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "task": self.task,
            "output": self.output,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "fairness": {a: {k: _finite(v) for k, v in f.items()} for a, f in self.fairness.items()},
            "prediction_drift": self.drift.to_json() if self.drift is not None else None,
            "business": self.business,
            "estimated": self.estimated,
            "notes": self.notes,
        }


@dataclass
class LiveReport:
    """What the feedback loop found: per-head figures, every live rule, the verdict and its reasons."""

    model: str
    versions: list[str]
    since: datetime | None
    until: datetime | None
    predictions: int
    labelled: int
    heads: dict[str, LiveHead]
    rules: list[RuleOutcome]
    verdict: Verdict
    reasons: list[str]
    policy: str
    notes: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Share of the logged predictions (rows) joined with an outcome of any head."""
        return self.labelled / self.predictions if self.predictions else 0.0

    @property
    def failures(self) -> list[RuleOutcome]:
        return [r for r in self.rules if not r.passed]

    @property
    def crossed(self) -> list[str]:
        """The sections with a crossed rule (live_accuracy, live_fairness, prediction_drift)."""
        return [s for s in SECTIONS if any(r.section == s for r in self.failures)]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "crossed": self.crossed,
            "model": self.model,
            "versions": self.versions,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "policy": self.policy,
            "heads": {h: v.to_json() for h, v in self.heads.items()},
            "rules": [r.model_dump() for r in self.rules],
            "notes": self.notes,
        }

    def markdown(self) -> str:
        lines = [
            f"# Live report: {self.model}",
            "",
            f"**Verdict: {self.verdict}**: " + "; ".join(self.reasons),
            "",
            f"{self.predictions:,} logged predictions ({self.since} to {self.until}), {self.labelled:,} with "
            f"an outcome (coverage {self.coverage:.1%}); policy {self.policy}.",
            "",
            "| head | labelled | metrics | PSI | predicted mean | realised mean |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for h in self.heads.values():
            shown = ", ".join(f"{k} {v:.3g}" for k, v in h.metrics.items() if k in _SHOWN) or "-"
            psi = f"{h.drift.psi:.3f}" if h.drift is not None else "-"
            lines.append(
                f"| {h.head} | {h.labelled:,} | {shown} | {psi} | {_num(h.business.get('predicted_mean'))} | "
                f"{_num(h.business.get('realised_mean'))} |"
            )
        lines += [
            "",
            "| section | head | rule | observed | 95 % interval | holds |",
            "|---|---|---|---:|---:|---|",
        ]
        for r in self.rules:
            observed = _num(r.observed) if not isinstance(r.observed, str) else r.observed
            lines.append(
                f"| {r.section} | {r.head} | {r.rule} | {observed} | {_interval(r) or '-'} | "
                f"{'yes' if r.passed else 'NO'} |"
            )
        notes = [*self.notes, *(f"{h.head}: {n}" for h in self.heads.values() for n in h.notes)]
        if notes:
            lines += ["", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"


_SHOWN = ("auc_roc", "ece", "brier", "r2", "rmse", "spearman")


def _num(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _interval(rule: RuleOutcome) -> str | None:
    interval = getattr(rule, "interval", None)
    return None if interval is None else f"{interval[0]:.4g} to {interval[1]:.4g}"


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


# ---- the figures ----------------------------------------------------------------------------------------


def psi(reference: Any, current: Any, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference``: the reference's quantile bins,
    each share floored at 1e-4 so an empty bin counts as a large (finite) shift."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    r = np.maximum(np.histogram(ref, edges)[0] / ref.size, 1e-4)
    c = np.maximum(np.histogram(cur, edges)[0] / cur.size, 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def _drift(
    current: npt.NDArray[np.float64], reference: npt.NDArray[np.float64] | None, threshold: float
) -> tuple[PredictionDrift | None, str | None]:
    """``current`` (every logged prediction, oldest first) against ``reference``, else its first half
    against its second."""
    from scipy.stats import ks_2samp

    if reference is not None:
        ref = np.asarray(reference, dtype="float64")
        ref, cur, what = ref[np.isfinite(ref)], current, f"the training reference ({ref.size:,} predictions)"
    else:  # the first half of the window in time against the second
        half = current.size // 2
        ref, cur, what = (
            current[:half],
            current[half:],
            "the first half of the logged predictions (no reference given)",
        )
    if ref.size < MIN_DRIFT_ROWS or cur.size < MIN_DRIFT_ROWS:
        return None, f"prediction drift not tested: {ref.size:,} reference and {cur.size:,} current predictions " \
            f"(at least {MIN_DRIFT_ROWS} each)"  # fmt: skip
    ks = ks_2samp(ref, cur)
    return PredictionDrift(
        psi(ref, cur), float(ks.statistic), float(ks.pvalue), threshold, what, ref.size, cur.size
    ), None


def _fairness(
    head: Head,
    joined: pd.DataFrame,
    y: Any,
    pred: Any,
    contract: Contract,
    policy: PromotionPolicy,
    seed: int,
) -> tuple[dict[str, dict[str, float]], list[RuleOutcome], list[str]]:
    """The gate's figures and rules on the labelled live rows, judged on their bootstrap intervals.

    Returns the point figures (a dict per attribute), the rule outcomes (:class:`LiveRule`, each judged
    figure's interval with it) and notes (what was not judged, and why)."""
    from engage.fairness import protected_groups
    from engage.fairness._gate import UNJUDGED, _judge, _measure, _rule_text
    from engage.model._groups import UNKNOWN

    f = policy.fairness
    names = list(f.attributes or contract.protected)
    missing = [n for n in names if n not in joined.columns or joined[n].isna().all()]
    if missing:
        return {}, [], [f"live fairness not measured: the logged requests carry no {', '.join(missing)}"]
    groups = protected_groups(joined, contract, f.attributes or None, intersections=f.intersections)
    # a live window is not a test split: no scaling down by min_group_share (see docs/feedback.md)
    minimum = f.min_group_size
    replicates = f.bootstrap
    on: Literal["value", "interval"] = "interval" if replicates >= MIN_REPLICATES else "value"
    notes = []
    if on == "value":
        notes.append(
            f"live fairness judged on point estimates: the policy's fairness.bootstrap ({replicates}) is "
            f"under the {MIN_REPLICATES} replicates an interval needs"
        )
    y, pred, groups = _bounded(y, pred, groups, seed, notes)
    task = head.task.value
    try:
        measured = _measure(task, y, pred, groups, policy, seed, replicates, minimum)
    except SchemaError as e:
        return {}, [], [f"live fairness not measured: {e.message}"]
    figures = {
        _rule_text(a, rule): m.summary[rule.metric]
        for a, m in measured.items()
        for rule in f.rules(head.name, task)
        if rule.metric in m.summary
    }
    rules: list[RuleOutcome] = []
    for r in _judge(head.name, task, measured, policy, minimum, on=on):
        if r.rule.startswith(UNJUDGED):  # too few labels per group yet: not bias drift, not judged
            r = r.model_copy(
                update={"rule": f"{r.rule} (not judged yet: too few labelled rows)", "passed": True}
            )
        figure = figures.get(r.rule)
        interval = None
        if figure is not None and math.isfinite(figure.low) and math.isfinite(figure.high):
            interval = (figure.low, figure.high)
        rules.append(LiveRule(**{**r.model_dump(), "section": "live_fairness", "interval": interval}))
    for a, m in measured.items():
        small = [f"{g.group} {g.rows:,}" for g in m.groups if not g.judged and g.group != UNKNOWN]
        if small:
            notes.append(
                f"live fairness: {a}: not judged yet: too few labelled rows in {', '.join(small)} "
                f"(a group needs {minimum:,})"
            )
    return {a: {k: fig.value for k, fig in m.summary.items()} for a, m in measured.items()}, rules, notes


def _bounded(
    y: Any, pred: Any, groups: dict[str, Any], seed: int, notes: list[str]
) -> tuple[Any, Any, dict[str, Any]]:
    """At most :data:`LIVE_FAIRNESS_ROWS` labelled rows, a seeded sample of them when there are more
    (the bootstrap's cost grows with the rows; its intervals only widen on a sample)."""
    n = len(y)
    if n <= LIVE_FAIRNESS_ROWS:
        return y, pred, groups
    rows = np.sort(np.random.default_rng(seed).choice(n, LIVE_FAIRNESS_ROWS, replace=False))
    notes.append(
        f"live fairness measured on a seeded sample of {LIVE_FAIRNESS_ROWS:,} of the {n:,} labelled rows"
    )
    return y[rows], pred[rows], {a: g[rows] for a, g in groups.items()}


def _join(
    events: pd.DataFrame, outcomes: pd.DataFrame, id_column: str, time_column: str, targets: list[str]
) -> pd.DataFrame:
    """Each outcome row with the customer's latest prediction at or before its observed time."""
    import pandas as pd

    ev = events.assign(
        _key=events["customer_id"].astype("string"),
        _pos=np.arange(len(events)),
        # one resolution on both sides: merge_asof refuses ns against us (a table written by another tool)
        event_time=pd.to_datetime(events["event_time"], utc=True).astype("datetime64[ns, UTC]"),
    )
    ev = ev[ev["_key"].notna()].sort_values("event_time", kind="stable")
    try:
        at = pd.to_datetime(outcomes[time_column], utc=True).astype("datetime64[ns, UTC]")
    except (TypeError, ValueError) as e:
        raise SchemaError(f"outcomes: {time_column!r} is not a time column: {e}") from None
    oc = pd.DataFrame({"_key": outcomes[id_column].astype("string"), "_at": at})
    for t in targets:
        oc[t] = outcomes[t].to_numpy()
    oc = oc[oc["_key"].notna() & oc["_at"].notna()].sort_values("_at", kind="stable")
    if oc.empty or ev.empty:
        return ev.iloc[0:0].assign(**{t: pd.Series(dtype="float64") for t in targets})
    joined = pd.merge_asof(oc, ev, left_on="_at", right_on="event_time", by="_key", direction="backward")
    return joined[joined["_pos"].notna()].reset_index(drop=True)


def live_report(
    events: pd.DataFrame,
    outcomes: pd.DataFrame,
    contract: Contract,
    policy: PromotionPolicy | None = None,
    reference: pd.DataFrame | Mapping[str, Any] | None = None,
    *,
    time_column: str = OUTCOME_TIME,
    psi_threshold: float = PSI_THRESHOLD,
    seed: int = 0,
) -> LiveReport:
    """Join ``events`` (:func:`read_events`) with ``outcomes`` and judge the live figures by ``policy``.

    ``reference``: each head output's training predictions (columns named ``churn_probability``, ...);
    without it, prediction drift compares the first half of the window with the second.
    :class:`SchemaError` when a table lacks the columns the join needs; :class:`DataError` when there is
    no logged prediction."""
    from engage.model._heads import Head, head_labels
    from engage.training import head_metrics

    policy = policy or load_policy()
    missing = [c for c in BASE_COLUMNS if c not in events.columns]
    if missing:
        raise SchemaError(f"events: not an event store table (missing {', '.join(missing)})")
    if events.empty:
        raise DataError("events: no logged predictions to report on")
    id_column = next((n for n, c in contract.columns.items() if c.role.value == "id"), "customer_id")
    for c in (id_column, time_column):
        if c not in outcomes.columns:
            raise SchemaError(
                f"outcomes: no {c!r} column (an outcomes table holds {id_column}, {time_column} and outcome "
                f"columns named as the contract's targets: {', '.join(t.column for t in contract.targets.values())})"
            )
    heads = [Head(n, t.column, t.task, t.distribution, t.positive) for n, t in contract.targets.items()]
    logged = [h for h in heads if PREDICTION_PREFIX + h.output in events.columns]
    notes = [f"head {h.name}: not in the logged predictions" for h in heads if h not in logged]
    targets = [h.column for h in logged if h.column in outcomes.columns]
    joined = _join(events, outcomes, id_column, time_column, targets)
    ordered = events.sort_values("event_time", kind="stable")
    rules: list[RuleOutcome] = []
    out: dict[str, LiveHead] = {}
    labelled_rows: set[int] = set()
    for head in logged:
        column = PREDICTION_PREFIX + head.output
        every = ordered[column].to_numpy(dtype="float64", na_value=np.nan)
        every = every[np.isfinite(every)]
        live = LiveHead(head.name, head.task.value, head.output, int(every.size), 0)
        live.business["predicted_mean_all"] = float(every.mean()) if every.size else None
        ref = None
        if reference is not None and head.output in reference:
            ref = np.asarray(reference[head.output], dtype="float64")
        if head.classification and every.size and ((every >= 0) & (every <= 1)).all():
            from ._cbpe import estimate_classification

            estimate = estimate_classification(every, name=head.output)
            live.estimated = estimate.to_dict()
        live.drift, note = _drift(every, ref, psi_threshold)
        if note:
            live.notes.append(note)
        if live.drift is not None:
            d = live.drift
            rules.append(
                RuleOutcome(
                    head=head.name,
                    rule=f"prediction PSI <= {d.threshold:g} (against {d.reference})",
                    observed=d.psi,
                    threshold=d.threshold,
                    passed=not d.drifted,
                    section="prediction_drift",
                )
            )
        if head.column not in joined.columns:
            live.notes.append(f"no outcomes yet: the outcomes table has no {head.column!r} column")
            out[head.name] = live
            continue
        y = head_labels(joined, head)
        pred = joined[column].to_numpy(dtype="float64", na_value=np.nan)
        keep = np.isfinite(y) & np.isfinite(pred)
        live.labelled = int(keep.sum())
        labelled_rows.update(joined["_pos"].to_numpy()[keep].astype(int).tolist())
        y, pred, rows = y[keep], pred[keep], joined[keep].reset_index(drop=True)
        if live.labelled:
            live.business["predicted_mean"] = float(pred.mean())
            live.business["realised_mean"] = float(y.mean())
        enough = live.labelled >= MIN_LABELLED and (not head.classification or np.unique(y).size == 2)
        if not enough:
            live.notes.append(
                f"{live.labelled:,} labelled rows: too few for live figures (at least {MIN_LABELLED}"
                + (", with both classes)" if head.classification else ")")
            )
            out[head.name] = live
            continue
        live.metrics = head_metrics(head, y, pred)
        if live.estimated:
            from ._cbpe import realised_classification

            live.estimated["versus_realised"] = estimate.compare(realised_classification(y, pred))
        judged = evaluate(policy, {head.name: live.metrics}).rules
        rules += [r.model_copy(update={"section": "live_accuracy"}) for r in judged]
        if contract.fairness_applicable and contract.protected:
            live.fairness, fair_rules, fair_notes = _fairness(head, rows, y, pred, contract, policy, seed)
            rules += fair_rules
            live.notes += fair_notes
        out[head.name] = live
    failed = [r for r in rules if not r.passed]
    labelled = len(labelled_rows)
    verdict: Verdict
    if failed:
        verdict, reasons = (
            "fail",
            [
                f"{r.section}: {r.head}: {r.rule} (observed {_num(_float(r.observed))}"
                + (f", 95 % interval {_interval(r)})" if _interval(r) else ")")
                for r in failed
            ],
        )
    elif not labelled:
        verdict = "no_labels"
        reasons = [
            f"no labels yet: none of the {len(events):,} logged predictions has an outcome (coverage 0); "
            "live accuracy and live fairness wait for outcomes"
            + ("; prediction drift holds" if any(r.section == "prediction_drift" for r in rules) else "")
        ]
    else:
        verdict, reasons = "pass", [f"every live rule holds ({len(rules)} rules)"]
    times = events["event_time"]
    names = events["model_name"].dropna().astype(str)
    return LiveReport(
        model=str(names.mode().iloc[0]) if len(names) else "",
        versions=sorted({str(v) for v in events["model_version"].dropna() if str(v)}),
        since=times.min().to_pydatetime(),
        until=times.max().to_pydatetime(),
        predictions=len(events),
        labelled=labelled,
        heads=out,
        rules=rules,
        verdict=verdict,
        reasons=reasons,
        policy=f"{policy.policy} {policy.version}",
        notes=notes,
    )


def _float(v: float | str | None) -> float | None:
    return v if isinstance(v, float) else None


def write_report(report: LiveReport, out_dir: str | Path) -> dict[str, Path]:
    """``report.json`` and ``report.md`` in ``out_dir``, each written whole (temporary file, rename)."""
    import json

    from engage._io import write_text_atomic

    folder = Path(out_dir)
    return {
        "json": write_text_atomic(
            folder / "report.json", json.dumps(report.to_json(), indent=2, default=str) + "\n"
        ),
        "markdown": write_text_atomic(folder / "report.md", report.markdown()),
    }
