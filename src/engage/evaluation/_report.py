"""One self-contained HTML page with the test-set metrics and plots of every model head.

Plots are PNG images drawn with matplotlib's Agg canvas and inlined as base64, so the page needs nothing
but itself. The page holds no timestamp: the same evaluations give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engage.errors import SchemaError

from ._metrics import _binary, _capture_curve, _pair, calibration_curve, lift_table, roc_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TASKS", "HeadEvaluation", "render_html_report"]

#: the tasks a head can have
TASKS = ("regression", "binary_classification")

# error messages (formatted where they are raised; the tests match on them)
_UNKNOWN_TASK = "head {head!r}: task must be one of {tasks}, got {task!r}"
_NO_PREDICTIONS = "head {head!r} has no model predictions"

#: most points drawn in a predicted-vs-actual scatter
SCATTER_POINTS = 5_000
#: heads whose values are money: their report adds a cumulative capture curve
_VALUE_HEADS = ("ltv",)
_SEED = 0


@dataclass(frozen=True, eq=False)
class HeadEvaluation:
    """Test-set outcome of one prediction head (``churn``, ``ltv``, ...) for one or more models.

    ``predictions`` maps a model name to its test predictions (probabilities of class 1 for
    classification); the first model is the primary one. ``metrics`` maps a model name to the figures
    computed by this package's metric functions.
    """

    head: str
    task: str
    y_true: npt.NDArray[Any]
    predictions: dict[str, npt.NDArray[Any]]
    metrics: dict[str, dict[str, float]]
    notes: tuple[str, ...] = ()
    #: a money-like head (adds the cumulative capture curve); by default heads named ``ltv``
    value: bool | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SchemaError(_UNKNOWN_TASK.format(head=self.head, tasks=", ".join(TASKS), task=self.task))
        if not self.predictions:
            raise SchemaError(_NO_PREDICTIONS.format(head=self.head))

    @property
    def primary(self) -> str:
        """Name of the primary model (the first of ``predictions``)."""
        return next(iter(self.predictions))


def render_html_report(
    evaluations: Sequence[HeadEvaluation],
    *,
    title: str,
    summary_rows: Sequence[tuple[str, str]] = (),
) -> str:
    """The report page: a summary table, then per head a metrics table (models as columns) and plots.

    Classification heads get an ROC curve, a reliability diagram and lift by decile; regression heads a
    predicted-vs-actual scatter and a residual histogram; value heads (``ltv``) also a cumulative capture
    curve. Raises :class:`~engage.errors.SchemaError` when a head's labels or predictions are unusable.
    """
    parts = [f"<h1>{_esc(title)}</h1>"]
    if summary_rows:
        rows = "".join(
            f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>" for label, value in summary_rows
        )
        parts.append(f'<table class="summary">{rows}</table>')
    parts.extend(_section(e) for e in evaluations)
    return _PAGE.format(title=_esc(title), body="\n".join(parts))


# -- page ------------------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 76rem; padding: 0 1rem; color: #1b1f23; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; }}
th {{ background: #f6f8fa; }}
table.metrics td {{ text-align: right; font-variant-numeric: tabular-nums; }}
section {{ border-top: 2px solid #d0d7de; margin-top: 2rem; }}
h2 small {{ color: #57606a; font-weight: normal; font-size: .7em; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }}
figure img {{ max-width: 100%; height: auto; border: 1px solid #eaeef2; }}
figcaption {{ color: #57606a; font-size: .9em; }}
</style></head><body>
{body}
</body></html>
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def _section(e: HeadEvaluation) -> str:
    classification = e.task == "binary_classification"
    for model, pred in e.predictions.items():  # every plot below may assume clean, aligned arrays
        if classification:
            _binary(e.y_true, pred, f"{e.head} ({model})", both_classes="AUC")
        else:
            _pair(e.y_true, pred, e.head, "values", f"predictions of {model}")
    truth = np.asarray(e.y_true, dtype=np.float64)
    mean = _number(float(truth.mean()))
    facts = f"{truth.size:,} test rows, " + (f"positive rate {mean}" if classification else f"mean {mean}")
    parts = [
        f"<section><h2>{_esc(e.head)} <small>{_esc(e.task.replace('_', ' '))}</small></h2>",
        f"<p>{_esc(facts)}; primary model: <b>{_esc(e.primary)}</b></p>",
        _metrics_table(e),
    ]
    if e.notes:
        parts.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in e.notes) + "</ul>")
    if classification:
        plots = [
            ("ROC curve", _roc),
            ("Reliability diagram", _reliability),
            ("Lift by decile", _lift),
        ]
    else:
        plots = [("Predicted vs actual", _scatter), ("Residuals", _residuals)]
        if e.value or (e.value is None and e.head.lower() in _VALUE_HEADS):
            plots.append(("Cumulative capture", _capture))
    figures = "".join(
        f'<figure><img src="data:image/png;base64,{_plot(draw, e)}" alt="{_esc(e.head)}: {_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
        for caption, draw in plots
    )
    parts.append(f'<div class="plots">{figures}</div></section>')
    return "\n".join(parts)


def _metrics_table(e: HeadEvaluation) -> str:
    models = list(e.predictions) + [m for m in e.metrics if m not in e.predictions]
    names: list[str] = []
    for model in models:
        names += [k for k in e.metrics.get(model, {}) if k not in names]
    if not names:
        return "<p>No metrics.</p>"
    header = "<tr><th>metric</th>" + "".join(f"<th>{_esc(m)}</th>" for m in models) + "</tr>"
    rows = "".join(
        f"<tr><th>{_esc(name)}</th>"
        + "".join(
            f"<td>{_number(float(e.metrics[m][name])) if name in e.metrics.get(m, {}) else ''}</td>"
            for m in models
        )
        + "</tr>"
        for name in names
    )
    return f'<table class="metrics">{header}{rows}</table>'


# -- plots -----------------------------------------------------------------------------------------------


def _plot(draw: Callable[[Axes, HeadEvaluation], None], e: HeadEvaluation) -> str:
    """Base64 PNG of one plot, drawn on a figure that belongs to no pyplot state (nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax, e)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    fig.clear()
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _roc(ax: Axes, e: HeadEvaluation) -> None:
    for model, prob in e.predictions.items():
        points = roc_points(e.y_true, prob, name=e.head)
        auc = e.metrics.get(model, {}).get("auc_roc")
        label = model if auc is None else f"{model} (AUC {auc:.3f})"
        ax.plot([p["fpr"] for p in points], [p["tpr"] for p in points], label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"{e.head}: ROC curve")
    ax.legend(loc="lower right", fontsize="small")


def _reliability(ax: Axes, e: HeadEvaluation) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for model, prob in e.predictions.items():
        curve = calibration_curve(e.y_true, prob, name=e.head)
        ax.plot([c["mean_prob"] for c in curve], [c["positive_rate"] for c in curve], marker="o", label=model)
    ax.set(xlabel="mean predicted probability (10 bins)", ylabel="observed positive rate")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{e.head}: reliability diagram")
    ax.legend(loc="upper left", fontsize="small")


def _lift(ax: Axes, e: HeadEvaluation) -> None:
    width = 0.8 / len(e.predictions)
    for i, (model, prob) in enumerate(e.predictions.items()):
        table = lift_table(e.y_true, prob, name=e.head)
        deciles = np.array([row["decile"] for row in table])
        ax.bar(deciles - 0.4 + width * (i + 0.5), [row["lift"] for row in table], width=width, label=model)
    ax.axhline(1.0, linestyle="--", color="grey", linewidth=1, label="no model")
    ax.set_xticks(range(1, 11))
    ax.set(xlabel="decile by score (1 = highest)", ylabel="lift (positive rate / overall)")
    ax.set_title(f"{e.head}: lift by decile")
    ax.legend(loc="upper right", fontsize="small")


def _scatter(ax: Axes, e: HeadEvaluation) -> None:
    truth = np.asarray(e.y_true, dtype=np.float64)
    pred = np.asarray(e.predictions[e.primary], dtype=np.float64)
    shown = np.arange(truth.size)
    if truth.size > SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(_SEED).choice(truth.size, SCATTER_POINTS, replace=False))
    ax.scatter(truth[shown], pred[shown], s=6, alpha=0.35, linewidths=0)
    low = float(min(truth.min(), pred.min()))
    high = float(max(truth.max(), pred.max()))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set(xlabel="actual", ylabel=f"predicted ({e.primary})")
    ax.set_title(f"{e.head}: predicted vs actual")
    if shown.size < truth.size:
        note = f"{shown.size:,} of {truth.size:,} rows shown"
        ax.text(0.98, 0.02, note, transform=ax.transAxes, ha="right", va="bottom", fontsize="small")
    ax.legend(loc="upper left", fontsize="small")


def _residuals(ax: Axes, e: HeadEvaluation) -> None:
    truth = np.asarray(e.y_true, dtype=np.float64)
    residuals = {m: np.asarray(p, dtype=np.float64) - truth for m, p in e.predictions.items()}
    pooled = np.concatenate(list(residuals.values()))
    low, high = (float(v) for v in np.percentile(pooled, [0.5, 99.5]))
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, 51)
    for model, r in residuals.items():
        ax.hist(np.clip(r, low, high), bins=edges.tolist(), histtype="step", linewidth=1.5, label=model)
    ax.axvline(0.0, linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="predicted - actual (0.5-99.5 % range, tails clipped)", ylabel="rows")
    ax.set_title(f"{e.head}: residuals")
    ax.legend(loc="upper right", fontsize="small")


def _capture(ax: Axes, e: HeadEvaluation) -> None:
    for model, pred in e.predictions.items():
        x, y = _capture_curve(e.y_true, pred, 1_000, name=e.head)
        ax.plot(x, y, label=model)
    x, y = _capture_curve(e.y_true, e.y_true, 1_000, name=e.head)
    ax.plot(x, y, linestyle=":", color="black", linewidth=1, label="perfect order")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="random")
    ax.set(xlabel="share of customers, highest predicted first", ylabel="share of total actual value")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(f"{e.head}: cumulative capture")
    ax.legend(loc="lower right", fontsize="small")
