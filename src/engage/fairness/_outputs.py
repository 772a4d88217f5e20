"""Fairness outputs: JSON for machines, an HTML trade-off report and a KFP Markdown summary for people.

``out_dir/``::

    fairness.json   verdict, reasons, per head: every candidate with accuracy, fairness figures (with 95 %
                    intervals) per attribute and group, rule outcomes, eligibility, and the choice; the
                    model that ships with its test and train figures (``shipped``: what promotion judges)
    report.html     per head: the accuracy-fairness Pareto plot and the candidates table; groups per attribute
    summary.md      the verdict and the trade-off table, for a KFP Markdown visualization
    model/          the model to promote (each head's chosen candidate); absent when the verdict is fail
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from engage._io import replace_dir, staging_dir, write_text_atomic

from ._gate import CandidateResult, FairnessResult, HeadFairness

__all__ = ["fairness_json", "summary_markdown", "write_fairness"]

#: the fairness figure each task's Pareto plot puts on its x axis (worst value over attributes)
PARETO_X = {"binary_classification": ("demographic_parity_ratio", min), "regression": ("mae_ratio", max)}


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _candidate_json(c: CandidateResult, h: HeadFairness) -> dict[str, Any]:
    return {
        "name": c.name,
        "stage": c.candidate.stage,
        "description": c.candidate.description,
        "shippable": c.candidate.shippable,
        "why_not_shippable": c.candidate.unshippable,
        "accuracy_rank": h.accuracy_rank(c.name),
        "failing_rules": [r.rule for r in c.rules if not r.passed],
        "decision": h.why(c),
        "notes": c.candidate.notes,
        "reads_protected_attributes": c.candidate.needs_protected,
        "eligible": c.eligible,
        "why_not_eligible": c.why_not,
        "problem": c.candidate.problem,
        "seconds": round(c.candidate.seconds, 3),
        "meets_policy": c.meets_policy,
        "accuracy": {k: _num(v) for k, v in c.accuracy.items()},
        "train_accuracy": {k: _num(v) for k, v in c.train_accuracy.items()},
        "rules": [r.model_dump() for r in c.rules],
        "fairness": {a: f.to_json() for a, f in c.fairness.items()},
        "offsets": c.candidate.offsets.to_json() if c.candidate.offsets else None,
    }


def _shipped_json(h: HeadFairness) -> dict[str, Any] | None:
    """The head's model that ships and its figures, which the promotion policy's head and overfitting
    rules judge (``test`` on the gate's test rows, the same rows training measured; ``train`` on the
    training rows); None when the head fails and nothing ships."""
    if h.chosen is None:
        return None
    c = h.candidate(h.chosen)
    return {
        "candidate": c.name,
        "mitigated": c.name != "unmitigated",
        "test_rows": h.test_rows,
        "test": {k: _num(v) for k, v in c.accuracy.items()},
        "train": {k: _num(v) for k, v in c.train_accuracy.items()},
    }


def fairness_json(result: FairnessResult) -> dict[str, Any]:
    return {
        "verdict": result.verdict,
        "reason": result.reason,
        #: false when the contract states fairness does not apply; ``reason`` is then the contract's reason
        "applicable": result.applicable,
        "contract": {"name": result.contract.contract, "version": result.contract.version},
        "policy": {
            "name": result.policy.policy,
            "version": result.policy.version,
            "fairness": result.policy.fairness.model_dump(),
        },
        "attributes": result.attributes,
        "test_rows": result.test_rows,
        "seconds": round(result.seconds, 3),
        "heads": {
            n: {
                "task": h.task,
                "verdict": h.verdict,
                "reason": h.reason,
                "chosen": h.chosen,
                "primary_metric": h.primary_metric,
                "test_rows": h.test_rows,
                "shipped": _shipped_json(h),
                "candidates": [_candidate_json(c, h) for c in h.candidates],
            }
            for n, h in result.heads.items()
        },
        "notes": result.notes,
    }


def _worst(c: CandidateResult, task: str) -> float:
    metric, pick = PARETO_X[task]
    values = [f.summary[metric].value for f in c.fairness.values() if metric in f.summary]
    values = [v for v in values if math.isfinite(v)]
    return float(pick(values)) if values else float("nan")


def _fmt(value: float | str | None, digits: int = 4) -> str:
    if isinstance(value, str):
        return value
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _not_applicable_text(result: FairnessResult) -> str:
    return (
        f"Fairness: not applicable — {result.reason} (stated by contract {result.contract.contract} "
        f"{result.contract.version}; nothing was measured and the trained model ships unmitigated)"
    )


def summary_markdown(result: FairnessResult) -> str:
    lines = [f"# Fairness gate: {result.verdict.upper().replace('_', ' ')}", ""]
    if not result.applicable:
        return "\n".join([*lines, _not_applicable_text(result), ""])
    for name, h in result.heads.items():
        metric = PARETO_X[h.task][0]
        lines += [f"## {name}: {h.verdict.replace('_', ' ')}", "", h.reason, ""]
        lines += [
            f"| candidate | stage | {h.primary_metric} | rank | worst {metric} | meets policy | eligible | chosen | why |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in h.candidates:
            rank = h.accuracy_rank(c.name)
            lines.append(
                f"| {c.name} | {c.candidate.stage} | {_fmt(c.accuracy.get(h.primary_metric))} | {rank or 'n/a'} | "
                f"{_fmt(_worst(c, h.task), 3)} | {'yes' if c.meets_policy else 'no'} | "
                f"{'yes' if c.eligible else 'no: ' + (c.why_not or '')} | {'**yes**' if c.name == h.chosen else ''} | "
                f"{h.why(c).replace('|', '/')} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _pareto_png(h: HeadFairness, policy_value: float | None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    metric = PARETO_X[h.task][0]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    for c in h.candidates:
        x, y = _worst(c, h.task), c.accuracy.get(h.primary_metric, float("nan"))
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        marker = "*" if c.name == h.chosen else ("o" if c.eligible else "x")
        ax.scatter([x], [y], s=160 if c.name == h.chosen else 50, marker=marker, zorder=3)
        ax.annotate(c.name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if policy_value is not None:
        ax.axvline(policy_value, color="grey", linestyle="--", label=f"policy {metric} {policy_value:g}")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel(f"worst {metric} over protected attributes")
    ax.set_ylabel(f"test {h.primary_metric}")
    ax.set_title(f"{h.head}: accuracy against fairness (x: not shippable, *: chosen)")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _reliability_png(h: HeadFairness) -> str | None:
    """Reliability curves per judged group of each single attribute, for the unmitigated and chosen models."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from engage.evaluation import calibration_curve

    if h.y_test is None:
        return None
    models = [
        c for c in h.candidates if c.name in ("unmitigated", h.chosen) and c.candidate.predictions is not None
    ]
    attributes = [a for a in h.groups if "&" not in a]
    if not models or not attributes:
        return None
    fig = Figure(figsize=(4.2 * len(attributes), 3.6 * len(models)), dpi=90)
    axes = fig.subplots(len(models), len(attributes), squeeze=False)
    for row, c in enumerate(models):
        for col, attribute in enumerate(attributes):
            ax = axes[row][col]
            labels = h.groups[attribute]
            judged = c.fairness[attribute].judged if attribute in c.fairness else []
            for group in judged:
                mask = labels == group
                points = calibration_curve(h.y_test[mask], c.candidate.predictions[mask])  # type: ignore[index]
                ax.plot(
                    [p["mean_prob"] for p in points],
                    [p["positive_rate"] for p in points],
                    marker="o",
                    ms=3,
                    label=group,
                )
            ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
            ax.set_title(f"{c.name}: by {attribute}", fontsize=9)
            ax.set_xlabel("mean predicted probability", fontsize=8)
            ax.set_ylabel("observed rate", fontsize=8)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def report_html(result: FairnessResult) -> str:
    parts = [
        f"<h1>Engage fairness report: {_esc(result.verdict.upper().replace('_', ' '))}</h1>",
        f"<p>Contract {_esc(result.contract.contract)} {_esc(result.contract.version)}; policy "
        f"{_esc(result.policy.policy)} {_esc(result.policy.version)}; {result.test_rows:,} test rows; attributes: "
        f"{_esc(', '.join(result.attributes))}; groups under {result.policy.fairness.min_group_size:,} rows and "
        f"'unknown' are reported, not judged; intervals are 95 % bootstrap ({result.policy.fairness.bootstrap} replicates).</p>",
    ]
    if not result.applicable:
        parts[1:] = [f"<p>{_esc(_not_applicable_text(result))}</p>"]
    for name, h in result.heads.items() if result.applicable else ():
        metric = PARETO_X[h.task][0]
        rule = next((r.value for r in result.policy.fairness.rules(name, h.task) if r.metric == metric), None)
        parts.append(
            f"<section><h2>{_esc(name)}: {_esc(h.verdict.replace('_', ' '))}</h2><p>{_esc(h.reason)}</p>"
        )
        parts.append(
            f'<img alt="{_esc(name)} Pareto plot" src="data:image/png;base64,{_pareto_png(h, rule)}">'
        )
        if h.task == "binary_classification":
            curves = _reliability_png(h)
            if curves is not None:
                parts.append(
                    f'<h3>Calibration by group</h3><img alt="{_esc(name)} reliability by group" '
                    f'src="data:image/png;base64,{curves}">'
                )
        rows = "".join(
            f"<tr><td>{'<b>' if c.name == h.chosen else ''}{_esc(c.name)}{'</b>' if c.name == h.chosen else ''}</td>"
            f"<td>{_esc(c.candidate.stage)}</td><td>{_fmt(c.accuracy.get(h.primary_metric))}</td>"
            f"<td>{h.accuracy_rank(c.name) or 'n/a'}</td>"
            f"<td>{_fmt(_worst(c, h.task), 3)}</td><td>{'yes' if c.meets_policy else 'no'}</td>"
            f"<td>{'yes' if c.candidate.shippable else _esc('no: ' + (c.candidate.unshippable or 'no safe artifact'))}</td>"
            f"<td>{'yes' if c.eligible else _esc(c.why_not or '')}</td><td>{_esc(h.why(c))}"
            + "".join(f"<br><small>{_esc(n)}</small>" for n in c.candidate.notes)
            + f"</td><td>{c.candidate.seconds:.1f} s</td></tr>"
            for c in h.candidates
        )
        parts.append(
            f"<table><tr><th>candidate</th><th>stage</th><th>{_esc(h.primary_metric)}</th><th>accuracy rank</th>"
            f"<th>worst {_esc(metric)}</th><th>meets policy</th><th>shippable</th><th>eligible</th><th>why</th>"
            f"<th>time</th></tr>{rows}</table>"
        )
        base = h.candidates[0]
        chosen = h.candidate(h.chosen) if h.chosen else None
        for label, cand in (("unmitigated", base), (f"chosen: {h.chosen}", chosen)):
            if cand is None or (label != "unmitigated" and cand is base):
                continue
            parts.append(f"<h3>{_esc(label)}: rules</h3><ul>")
            parts += [
                f"<li>{'pass' if r.passed else '<b>FAIL</b>'}: {_esc(r.rule)} (observed {_fmt(r.observed, 3)})</li>"
                for r in cand.rules
            ]
            parts.append("</ul>")
            for attribute, figures in cand.fairness.items():
                keys = list(figures.groups[0].stats) if figures.groups else []
                head_cells = "".join(f"<th>{_esc(k)}</th>" for k in keys)
                body = "".join(
                    f"<tr><td>{_esc(g.group)}</td><td>{g.rows:,}</td><td>{'yes' if g.judged else 'no'}</td>"
                    + "".join(
                        f"<td>{_fmt(g.stats[k].value, 3)} [{_fmt(g.stats[k].low, 3)}, {_fmt(g.stats[k].high, 3)}]</td>"
                        for k in keys
                    )
                    + "</tr>"
                    for g in figures.groups
                )
                gaps = "; ".join(
                    f"{k} {_fmt(v.value, 3)} [{_fmt(v.low, 3)}, {_fmt(v.high, 3)}]"
                    for k, v in figures.summary.items()
                )
                parts.append(
                    f"<details><summary>{_esc(label)} by {_esc(attribute)}: {_esc(gaps)}</summary><table><tr><th>group</th><th>rows</th>"
                    f"<th>judged</th>{head_cells}</tr>{body}</table>{''.join(f'<p>{_esc(n)}</p>' for n in figures.notes)}</details>"
                )
        parts.append("</section>")
    style = "body{font-family:system-ui,sans-serif;max-width:76rem;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .5rem}th{background:#f6f8fa}section{border-top:2px solid #d0d7de;margin-top:2rem}"
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Engage fairness report</title><style>{style}</style></head><body>{"".join(parts)}</body></html>'


def write_fairness(result: FairnessResult, out_dir: Path) -> dict[str, Path]:
    """Write every output into ``out_dir`` (replacing an older one only once all is written)."""
    out_dir = Path(out_dir)
    with staging_dir(out_dir) as stage:
        write_text_atomic(
            stage / "fairness.json", json.dumps(fairness_json(result), indent=2, allow_nan=False) + "\n"
        )
        write_text_atomic(stage / "report.html", report_html(result))
        write_text_atomic(stage / "summary.md", summary_markdown(result))
        bundle = result.chosen_bundle()
        if bundle is not None:
            bundle.save(stage / "model", metadata=bundle.metadata)
        replace_dir(stage, out_dir)
    names = ["fairness.json", "report.html", "summary.md"] + (["model"] if result.verdict != "fail" else [])
    return {n: out_dir / n for n in names}
