"""The model card as Markdown, and as one self-contained HTML page rendered from that Markdown.

Text from artifacts and the contract is escaped for Markdown here (:func:`_text`), and the HTML renderer
escapes any raw HTML as well, so a description holding ``<script>`` shows as text in both outputs.
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._schema import (
        AttributeAnalysis,
        CardContent,
        Figure,
        HeadFairness,
        HeadMetrics,
    )

__all__ = ["SECTIONS", "render_html", "render_markdown"]

#: the section headings, in the order of Mitchell et al. (2019)
SECTIONS = (
    "1. Model details",
    "2. Intended use",
    "3. Factors",
    "4. Metrics",
    "5. Evaluation data",
    "6. Training data",
    "7. Quantitative analyses",
    "8. Ethical considerations",
    "9. Caveats and recommendations",
)

_SPECIAL = re.compile(r"([\\`*\[\]<|~])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
_LONE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BLOCK_START = re.compile(r"^(?:[#>]|[+*-](?=\s|$)|\d{1,9}(?=[.)](?:\s|$)))")


def _text(value: object) -> str:
    """Plain text as inline Markdown that renders to exactly that text (one line, no markup, no raw HTML)."""
    s = " ".join(str(value).split())
    s = _SPECIAL.sub(r"\\\1", s)
    s = _ENTITY.sub(r"\\&", s)
    return _LONE_UNDERSCORE.sub(r"\\_", s)  # intraword underscores (column names) never start emphasis


def _para(value: object) -> str:
    """:func:`_text` at the start of a line, where ``#``, ``-``, ``>`` or ``1.`` would start a block."""
    s = _text(value)
    m = _BLOCK_START.match(s)
    if not m:
        return s
    return "\\" + s if not m[0][0].isdigit() else s[: m.end()] + "\\" + s[m.end() :]


def _code(name: object) -> str:
    """An identifier (column, metric, head) as a code span, or as escaped text when it holds a backtick."""
    s = " ".join(str(name).split())
    return _text(s) if "`" in s or "|" in s or not s else f"`{s}`"


def _num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def _figure(f: Figure | None) -> str:
    if f is None:
        return "n/a"
    if f.low is None or f.high is None or f.value is None:
        return _num(f.value)
    return f"{_num(f.value)} [{_num(f.low)}, {_num(f.high)}]"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _result(passed: bool) -> str:
    return "pass" if passed else "**FAIL**"


def _table(header: list[str], rows: list[list[str]], right: int = 0) -> list[str]:
    """A Markdown table; the last ``right`` columns are right-aligned (figures). Cells are already Markdown."""
    align = ["---"] * (len(header) - right) + ["---:"] * right
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _bullets(items: list[str]) -> list[str]:
    return [*(f"- {_para(i)}" for i in items), ""]


# ---- sections -------------------------------------------------------------------------------------


def _model_details(card: CardContent) -> list[str]:
    d = card.model_details
    lines = [
        f"- **Version:** `{d.version}` ({_text(d.version_source)}: it names the digest of every file, so it "
        "identifies the exact artifact)",
        f"- **Bundle:** {_code(d.bundle)} (format {_code(d.format)}, written by engage "
        f"{_text(d.engage_version or 'unknown')})",
        f"- **Trained at:** {_text(d.trained_at)}",
        f"- **Learner:** {_code(d.learner)}"
        + (f"; compared with {_code(d.baseline)}, trained on the same rows" if d.baseline else ""),
        f"- **Data contract:** {_text(d.contract)}; owner and contact: {_text(d.contract_owner)}",
        f"- **Promotion policy:** {_text(d.policy)}",
        "",
    ]
    rows = [
        [
            _code(h.head),
            _text(h.title),
            _code(h.output),
            _text(h.task.replace("_", " ")),
            _code(h.target) + (f" = {_text(h.positive)}" if h.positive is not None else ""),
            _code(h.objective) + ("" if h.transform == "none" else f" ({_text(h.transform)})"),
            _yes(h.calibrated),
            _text(h.boosting_rounds if h.boosting_rounds is not None else "n/a"),
            _code(h.adjustment) if h.adjustment else "none",
        ]
        for h in d.heads
    ]
    header = [
        "head",
        "name",
        "output",
        "task",
        "target",
        "objective",
        "calibrated",
        "rounds",
        "post-processor",
    ]
    lines += _table(header, rows)
    if d.training_config:
        settings = ", ".join(f"{_code(k)} {_text(v)}" for k, v in d.training_config.items())
        lines += [f"Training settings: {settings}.", ""]
    return lines


def _intended_use(card: CardContent) -> list[str]:
    u = card.intended_use
    return [
        "### Primary uses",
        "",
        *_bullets(u.primary_uses),
        f"**Users.** {_text(u.users)}",
        "",
        "### Out-of-scope uses",
        "",
        *_bullets(u.out_of_scope),
    ]


def _factors(card: CardContent) -> list[str]:
    f = card.factors
    lines = [
        "Groups come from the contract's protected attributes: they are measured, never model inputs.",
        "",
    ]
    rows = [
        [
            _code(p.name),
            _text(p.description),
            _text(", ".join(p.groups) or "n/a"),
            "**yes (against the contract)**" if p.model_input else "no",
            _text(", ".join(p.read_at_scoring_by) or "no"),
        ]
        for p in f.protected
    ]
    lines += _table(["attribute", "description", "groups", "model input", "read when scoring (heads)"], rows)
    if f.measured:
        lines += [
            f"The fairness report measures {', '.join(_code(m) for m in f.measured)} (`a&b` is the "
            f"intersection of two attributes); groups with fewer than {f.min_group_size or 0:,} test rows are "
            "reported but not judged"
            + (
                f"; classifications are judged at the threshold {f.decision_threshold:g}"
                if f.decision_threshold
                else ""
            )
            + ".",
            "",
        ]
    elif f.fairness_not_applicable is not None:
        lines += [_para(f"Fairness: not applicable — {f.fairness_not_applicable}"), ""]
    else:
        lines += ["No fairness report was given: no group was measured.", ""]
    if f.prohibited_attributes:
        lines += [f"Prohibited attributes (never used): {_text(', '.join(f.prohibited_attributes))}.", ""]
    return lines


def _head_metrics(h: HeadMetrics, learner: str, baseline: str | None) -> list[str]:
    rows_text = " / ".join(f"{n:,} {_text(part)}" for part, n in h.rows.items())
    lines = [
        f"### {_code(h.head)} ({_text(h.task.replace('_', ' '))})",
        "",
        f"Primary metric: {_code(h.primary_metric)}. Rows: {rows_text}.",
        "",
    ]
    header = ["metric", f"{_text(learner)} test"]
    if baseline:
        header.append(f"{_text(baseline)} test")
    header.append(f"{_text(learner)} train")
    if h.shipped_candidate:
        header.append(f"shipped ({_text(h.shipped_candidate)}) test")
    rows = []
    for m in h.metrics:
        name = f"**{_code(m.metric)}**" if m.metric == h.primary_metric else _code(m.metric)
        row = [name, _num(m.model_test)]
        if baseline:
            row.append(_num(m.baseline_test))
        row.append(_num(m.model_train))
        if h.shipped_candidate:
            row.append(_num(m.shipped_test))
        rows.append(row)
    lines += _table(header, rows, right=len(header) - 1)
    if h.policy_rules:
        rules = [
            [_text(r.rule), _num(r.observed), _num(r.threshold), _result(r.passed)] for r in h.policy_rules
        ]
        lines += ["Promotion-policy rules (test rows):", ""]
        lines += _table(["rule", "observed", "threshold", "result"], rules)
    for note in h.calibration:
        lines += [f"Calibration and training note: {_text(note)}.", ""]
    return lines


#: plain-language meaning of the metrics training records; only those in the card are listed
_METRIC_MEANING = {
    "r2": "share of the target's variance the predictions explain (1 is perfect, 0 is the mean)",
    "rmse": "root mean squared error, in the target's unit",
    "mae": "mean absolute error, in the target's unit",
    "spearman": "rank correlation between predictions and outcomes",
    "top_decile_capture": "share of the total true value held by the 10 % of customers predicted highest",
    "gini": "normalised Gini coefficient of the true value ordered by prediction (1 perfect, 0 random)",
    "auc_roc": "chance that a random positive is scored above a random negative",
    "pr_auc": "average precision: the area under the precision-recall curve",
    "log_loss": "cross-entropy of the predicted probabilities (lower is better)",
    "brier": "mean squared error of the predicted probabilities (lower is better)",
    "ece": "expected calibration error: mean gap between predicted and observed rates over 10 bins",
    "lift_top_decile": "positive rate among the 10 % highest scores, over the overall positive rate",
    "capture_top_decile": "share of all positives found among the 10 % highest scores",
    "accuracy": "share of correct labels, counting a probability of 0.5 or more as positive",
    "precision": "share of predicted positives (probability 0.5 or more) that are positive",
    "recall": "share of positives with a probability of 0.5 or more",
    "f1": "harmonic mean of precision and recall",
    "positive_rate": "share of positive labels in the rows",
}


def _metrics(card: CardContent) -> list[str]:
    m = card.metrics
    verdict = "every rule passes" if m.policy_passed else "**some rules FAIL**"
    if not m.judged_by_policy:
        verdict = "not applied to this model (it judged the run's other learner)"
    lines = [
        f"Figures on the test rows of the split (section 5); promotion policy {_text(m.policy)}: {verdict}.",
        "",
    ]
    shown = dict.fromkeys(r.metric for h in m.heads for r in h.metrics)
    known = [f"{_code(k)}: {_text(_METRIC_MEANING[k])}" for k in shown if k in _METRIC_MEANING]
    if known:
        lines += ["What the figures mean:", "", *(f"- {k}" for k in known), ""]
    for h in m.heads:
        lines += _head_metrics(h, m.model_learner, m.baseline_learner)
    c = m.champion
    if c is not None:
        lines += ["### Champion / challenger", ""]
        if c.problem:
            lines += [f"The champion {_code(c.champion)} could not be scored: {_text(c.problem)}.", ""]
        else:
            lines += [
                f"Against the champion {_code(c.champion)} on the same test rows (a head needs an "
                f"improvement above {c.min_improvement:g}): the {_text(c.winner)} wins.",
                "",
            ]
            rows = [
                [
                    _code(x.head),
                    _code(x.metric),
                    _num(x.champion),
                    _num(x.challenger),
                    _num(x.delta),
                    _text(x.winner),
                ]
                for x in c.heads
            ]
            lines += _table(["head", "metric", "champion", "challenger", "difference", "winner"], rows)
    return lines


def _evaluation_data(card: CardContent) -> list[str]:
    e = card.evaluation_data
    lines = [
        f"- **Split:** {_text(e.split)}",
        "- **Test rows per head:** " + ", ".join(f"{_code(h)} {n:,}" for h, n in e.test_rows.items()),
    ]
    if e.fairness_test_rows is not None:
        lines.append(
            f"- **Fairness report:** {e.fairness_test_rows:,} test rows, the same split rebuilt from the table"
        )
    lines += [f"- **Table:** {_text(e.table)}", ""]
    return lines


def _training_data(card: CardContent) -> list[str]:
    t = card.training_data
    lines = [
        f"- **Rows in the table:** {t.rows:,}",
        f"- **Source:** {_text(t.source) if t.source else 'not recorded in the training artifacts'}",
        "",
    ]
    parts = list(dict.fromkeys(p for r in t.rows_by_head.values() for p in r))
    rows = [[_code(h), *(f"{r.get(p, 0):,}" for p in parts)] for h, r in t.rows_by_head.items()]
    lines += _table(["head", *(_text(p) for p in parts)], rows, right=len(parts))
    lines += [f"**Features used** ({len(t.features)}):", ""]
    rows = [
        [
            _code(f.name),
            _text(f.kind),
            _text(f.unit or ""),
            _text(f.description or "not described in the contract"),
            _text(", ".join(f.levels)),
        ]
        for f in t.features
    ]
    lines += _table(["feature", "kind", "unit", "description", "levels seen in training"], rows)
    lines += ["**Columns that are not model inputs**, by contract role:", ""]
    rows = [[_code(c.name), _code(c.role), _text(c.description), _text(c.why)] for c in t.excluded]
    lines += _table(["column", "role", "description", "why"], rows)
    return lines


def _attribute(a: AttributeAnalysis, shipped: str, compare: bool) -> list[str]:
    stats = list(dict.fromkeys(k for g in a.groups for k in g.stats))
    lines = [f"##### {_code(a.attribute)}", ""]
    rows = [
        [_text(g.group), _yes(g.judged), f"{g.rows:,}", *(_figure(g.stats.get(s)) for s in stats)]
        for g in a.groups
    ]
    lines += ["Groups (value [95 % bootstrap interval]):", ""]
    lines += _table(["group", "judged", "n", *(_code(s) for s in stats)], rows, right=len(stats) + 1)
    header = ["gap figure (judged groups)", _text(shipped)] + (["unmitigated"] if compare else [])
    gaps = [
        [_code(g.figure), _figure(g.shipped), *([_figure(g.unmitigated)] if compare else [])] for g in a.gaps
    ]
    lines += _table(header, gaps, right=len(header) - 1)
    lines += _bullets(a.notes) if a.notes else []
    return lines


def _head_fairness(h: HeadFairness) -> list[str]:
    lines = [
        f"#### {_code(h.head)}: {_text(h.verdict.replace('_', ' '))}",
        "",
        _para(h.reason),
        "",
        f"Chosen: {_code(h.chosen) if h.chosen else 'none'}. This model carries {_code(h.shipped)} "
        f"({_text(h.shipped_stage)}: {_text(h.shipped_description)}); it reads protected attributes when "
        f"scoring: {_yes(h.reads_protected_attributes)}.",
        "",
    ]
    rows = [
        [
            ("**" + _code(c.name) + "**") if c.chosen else _code(c.name),
            _text(c.stage),
            _num(c.primary),
            _yes(c.meets_policy),
            "yes" if c.eligible else f"no: {_text(c.why_not or '')}",
        ]
        for c in h.candidates
    ]
    lines += _table(["candidate", "stage", _code(h.primary_metric), "meets policy", "eligible"], rows)
    compare = h.shipped != "unmitigated"
    header = (
        ["fairness rule", "threshold"] + (["unmitigated"] if compare else []) + [_text(h.shipped), "result"]
    )
    rules = [
        [
            _text(r.rule),
            _num(r.threshold),
            *([_num(r.unmitigated)] if compare else []),
            _num(r.shipped),
            _result(r.passed),
        ]
        for r in h.rules
    ]
    lines += _table(header, rules)
    for a in h.attributes:
        lines += _attribute(a, h.shipped, compare)
    return lines


def _quantitative(card: CardContent) -> list[str]:
    f = card.quantitative_analyses.fairness
    lines = ["### Fairness by group", ""]
    if not f.assessed:
        lines += ["**Fairness was not assessed**: no fairness report (engage fairness) was given.", ""]
        if f.required_rules:
            lines += ["The policy given requires, per head:", "", *_bullets(f.required_rules)]
    elif not f.applicable:
        lines += [
            f"**Fairness: not applicable** — {_text(f.reason or '')}",
            "",
            "The contract states this decision and its reason; no group was measured, no rule judged and no "
            "mitigation tried: the trained model ships unmitigated.",
            "",
        ]
    else:
        lines += [
            f"**Verdict: {_text((f.verdict or '').replace('_', ' '))}** (policy {_text(f.policy or '')}, "
            f"{f.test_rows or 0:,} test rows; attributes {', '.join(_code(a) for a in f.attributes)}).",
            "",
            _para(f.reason or ""),
            "",
            "Rules of the policy:",
            "",
            *_bullets(f.required_rules),
        ]
        for h in f.heads:
            lines += _head_fairness(h)
        lines += _bullets(f.notes) if f.notes else []
    return lines + _explanations(card)


def _explanations(card: CardContent) -> list[str]:
    e = card.quantitative_analyses.explanations
    lines = ["### Explanations (global feature importance)", ""]
    if not e.computed:
        return [*lines, "Explanations were not computed for this card.", ""]
    lines += [
        f"Method: {_text(e.method or 'not recorded')}; computed on model {_code(e.model_version or 'not recorded')}"
        + ("" if e.matches_model is not False else " (**not the model this card describes**)")
        + f"; from {_code(e.source or '')}.",
        "",
    ]
    for h in e.heads:
        space = f", in {_text(h.output_space)}" if h.output_space else ""
        base = f"; base value {_num(h.base_value)}" if h.base_value is not None else ""
        rows_text = f"; {h.rows:,} rows" if h.rows is not None else ""
        lines += [f"#### {_code(h.head)} ({_code(h.output)}{space}{base}{rows_text})", ""]
        top = h.features[:_TOP_FEATURES]
        rows = [
            [
                _code(i.feature),
                _num(i.mean_abs_shap),
                "n/a"
                if i.permutation_mean is None
                else f"{_num(i.permutation_mean)} ± {_num(i.permutation_std)}",
            ]
            for i in top
        ]
        lines += _table(["feature", "mean abs SHAP", "permutation importance (mean ± std)"], rows, right=2)
        if len(h.features) > len(top):
            lines += [f"The {_TOP_FEATURES} most important of {len(h.features)} features.", ""]
    return lines


_TOP_FEATURES = 10


def _ethics(card: CardContent) -> list[str]:
    return _bullets(card.ethical_considerations)


def _caveats(card: CardContent) -> list[str]:
    return _bullets(card.caveats)


def render_markdown(card: CardContent) -> str:
    """The whole card as Markdown (``model_card.md``)."""
    sections = (
        _model_details,
        _intended_use,
        _factors,
        _metrics,
        _evaluation_data,
        _training_data,
        _quantitative,
        _ethics,
        _caveats,
    )
    lines = [f"# Model card: {_text(card.title)}", "", *_bullets(card.summary)]
    for heading, section in zip(SECTIONS, sections, strict=True):
        lines += [f"## {heading}", "", *section(card)]
    lines += ["## Sources", "", *(f"- {_text(s.role)}: {_code(s.path)}" for s in card.sources), ""]
    lines += [f"Card format {_code(card.format)}; every figure above is read from these files.", ""]
    return "\n".join(lines)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 76rem;
  padding: 0 1.5rem; color: #1b1f23; line-height: 1.45; }}
h1 {{ font-size: 1.7rem; border-bottom: 2px solid #d0d7de; padding-bottom: .4rem; }}
h2 {{ margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .25rem; }}
h3 {{ margin-top: 1.6rem; font-size: 1.25rem; }}
h4 {{ margin: 1.4rem 0 .4rem; font-size: 1.12rem; }}
h5 {{ margin: 1.1rem 0 .3rem; font-size: 1rem; }}
h1 code, h2 code, h3 code, h4 code, h5 code {{ font-size: 1em; }}
table {{ border-collapse: collapse; margin: .4rem 0 1.2rem; font-size: .9rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .25rem .55rem; vertical-align: top; }}
th {{ background: #f6f8fa; text-align: left; }}
td[style*="right"] {{ white-space: nowrap; font-variant-numeric: tabular-nums; }}
tbody tr:nth-child(even) {{ background: #fbfcfd; }}
code {{ background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; font-size: .88em; }}
strong {{ color: #0b3d91; }}
li {{ margin: .2rem 0; }}
</style></head><body>
{body}
</body></html>
"""


def render_html(card: CardContent) -> str:
    """The card as one HTML page: the Markdown rendered with mistune, inline CSS, no external asset.

    mistune runs with ``escape=True``: raw HTML in the Markdown is shown as text, not interpreted.
    """
    import mistune

    body = str(mistune.create_markdown(escape=True, plugins=["table"])(render_markdown(card)))
    return _PAGE.format(title=html.escape(f"Model card: {card.title}"), body=body)
