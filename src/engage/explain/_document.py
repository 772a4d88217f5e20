"""The right to explanation: one plain-language document for one customer.

GDPR Article 22 gives a person subject to an automated decision the right to obtain human
intervention, to express their point of view and to contest the decision, and Articles 13-15 the right
to meaningful information about the logic involved; adverse-action rules (ECOA / Regulation B) ask for
the principal reasons. The document gives, for one customer: each prediction, its main reasons (reason
codes from exact attributions), a counterfactual for the decision ("what would have to change"), the
information used and not used, and how to contest. It is written as Markdown, HTML and JSON (the JSON
keeps the full explanations behind it, for the audit trail).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from engage._io import replace_dir, staging_dir
from engage.contract import Contract, Distribution, Role
from engage.errors import ExplainError

from ._explainer import Explainer
from ._reasons import describe_value, display_name, short_description

__all__ = ["CustomerExplanation", "customer_explanation"]


@dataclass
class CustomerExplanation:
    customer_id: str
    generated_at: str
    model_version: str
    decision_head: str
    predictions: list[dict[str, Any]]
    reasons: dict[str, list[dict[str, Any]]]
    counterfactual: dict[str, Any] | None
    inputs: list[dict[str, Any]]
    not_used: list[dict[str, str]]
    contact: str
    notes: list[str] = field(default_factory=list)
    #: the full explanations behind the document (method results in the common schema)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    # ---- rendering --------------------------------------------------------------------------------

    def to_markdown(self) -> str:
        lines = [
            f"# How we reached our prediction for customer {_md(self.customer_id)}",
            "",
            f"Generated {self.generated_at} by an automated model (version `{self.model_version}`). "
            "This page explains the prediction in plain language and tells you how to ask a person to "
            "review it.",
            "",
            "## What the model predicted",
            "",
            "| Prediction | Value |",
            "|---|---|",
        ]
        lines += [f"| {_md(p['name'])} | {_md(p['shown'])} |" for p in self.predictions]
        lines += ["", "## The main reasons", ""]
        for head, reasons in self.reasons.items():
            name = next(p["name"] for p in self.predictions if p["head"] == head)
            lines.append(f"**{_md(name.capitalize())}**")
            lines.append("")
            lines += [f"{i}. {_md(r['text'])}" for i, r in enumerate(reasons, 1)] or [
                "- No single factor stood out."
            ]
            lines.append("")
        lines += ["## What would change the result", ""]
        lines += self._counterfactual_lines()
        lines += [
            "",
            "## The information we used",
            "",
            "| Information | Your value |",
            "|---|---|",
        ]
        lines += [f"| {_md(i['description'])} | {_md(i['shown'])} |" for i in self.inputs]
        if self.not_used:
            lines += ["", "We did **not** use the following to make the prediction:", ""]
            lines += [f"- {_md(n['description'])}: {_md(n['why'])}" for n in self.not_used]
        lines += [
            "",
            "## How to contest this prediction",
            "",
            "You have the right to ask for a person to review this automated prediction, to give your "
            "point of view, and to contest it (GDPR Article 22(3)). You may also ask for a copy of the "
            "information we hold about you and have wrong information corrected (Articles 15 and 16).",
            "",
            f"1. Contact {_md(self.contact)} and quote the reference below.",
            "2. Tell us which information is wrong or what you disagree with.",
            "3. A person who did not build the model reviews the prediction with the information you give, "
            "and may override it. You receive the outcome and its reasons in writing.",
            "",
            f"Reference: customer `{_md(self.customer_id)}`, model `{self.model_version}`, "
            f"generated {self.generated_at}.",
        ]
        if self.notes:
            lines += ["", "## Technical notes", ""] + [f"- {_md(n)}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _counterfactual_lines(self) -> list[str]:
        cf = self.counterfactual
        if cf is None:
            return ["No counterfactual was computed."]
        name = next(p["name"] for p in self.predictions if p["head"] == self.decision_head)
        target = cf["target"]
        if not cf["found"]:
            return [f"We looked for changes that would bring the {_md(name)} {target}: {_md(cf['reason'])}."]
        if not cf["options"]:
            return [f"The {_md(name)} is already {target}."]
        out = [f"Each of these would bring the {_md(name)} {target}:", ""]
        for option in cf["options"]:
            changes = "; ".join(_md(c) for c in option["changes"])
            out.append(f"- {changes} (the {_md(name)} would be {_md(option['shown'])})")
        fixed = cf.get("held_fixed") or []
        if fixed:
            out += ["", f"Things you cannot change were held fixed: {_md(', '.join(fixed))}."]
        return out

    def to_html(self) -> str:
        import mistune

        render = mistune.create_markdown(escape=True, plugins=["table"])
        body = render(self.to_markdown())
        return _PAGE.format(title=f"Customer {_html(self.customer_id)}", body=body)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, out_dir: Path) -> dict[str, Path]:
        """``explanation.md``, ``explanation.html``, ``explanation.json`` in ``out_dir``, all or nothing."""
        texts = {
            "explanation.md": self.to_markdown(),
            "explanation.html": self.to_html(),
            "explanation.json": json.dumps(self.to_dict(), indent=2, default=str) + "\n",
        }
        out_dir = Path(out_dir)
        with staging_dir(out_dir) as stage:
            for name, text in texts.items():
                (stage / name).write_text(text, encoding="utf-8")
            replace_dir(stage, out_dir)
        return {name: out_dir / name for name in texts}


def customer_explanation(
    explainer: Explainer,
    table: pd.DataFrame,
    customer_id: str,
    *,
    head: str | None = None,
    now: datetime | None = None,
    counterfactual: bool = True,
) -> CustomerExplanation:
    """The document for the customer whose primary key is ``customer_id`` in ``table``."""
    contract = explainer.contract
    row, notes = _find(table, contract, customer_id)
    decision = head or explainer.default_head
    evidence = []
    predictions, reasons = [], {}
    for name in explainer.heads:
        result = explainer.explain(row, method="reasons", head=name)
        evidence.append(result.to_dict())
        notes += [n for n in result.meta.notes if n not in notes]
        first = result.data["rows"][0]
        predictions.append(
            {
                "head": name,
                "name": display_name(contract, name),
                "value": first["prediction"],
                "shown": _shown(explainer, name, first["prediction"]),
            }
        )
        top = first["reasons"] if name == decision else first["reasons"][:3]
        reasons[name] = top
    cf = _counterfactual(explainer, row, decision, evidence, notes) if counterfactual else None
    readable = explainer.encoder.values(explainer.encoder.frame(row))[0]
    inputs = [
        {
            "feature": n,
            "description": contract.columns[n].description if n in contract.columns else n,
            "shown": describe_value(contract.columns.get(n), readable[n]),
        }
        for n in explainer.encoder.names
    ]
    stamp = (now or datetime.now(UTC)).replace(microsecond=0).isoformat()
    return CustomerExplanation(
        customer_id=customer_id,
        generated_at=stamp,
        model_version=explainer.bundle.version or "unsaved",
        decision_head=decision,
        predictions=predictions,
        reasons={decision: reasons.pop(decision), **reasons},
        counterfactual=cf,
        inputs=inputs,
        not_used=_not_used(contract, explainer),
        contact=contract.owner,
        notes=notes,
        evidence=evidence,
    )


def _find(table: pd.DataFrame, contract: Contract, customer_id: str) -> tuple[pd.DataFrame, list[str]]:
    if len(contract.primary_key) != 1 or contract.primary_key[0] not in table.columns:
        raise ExplainError(
            f"contract {contract.contract} has no single primary-key column in the table: "
            "a customer cannot be looked up"
        )
    key = contract.primary_key[0]
    rows = table[table[key].astype("string") == str(customer_id)]
    if rows.empty:
        raise ExplainError(f"customer {customer_id!r} is not in the table ({len(table):,} rows, key {key})")
    notes = []
    if len(rows) > 1:
        event = contract.event_time.column if contract.event_time is not None else None
        if event and event in rows.columns:
            rows = rows.sort_values(event, kind="stable")
        notes.append(f"the table holds {len(rows)} rows for this customer; the latest one is explained")
        rows = rows.tail(1)
    return rows.reset_index(drop=True), notes


def _shown(explainer: Explainer, head: str, value: float) -> str:
    model = explainer.bundle.heads[head].head
    if model.classification:
        return f"{value:.0%}"
    if model.distribution is Distribution.unit_interval:
        return f"{value:.2f} on a scale from 0 to 1"
    if model.distribution is Distribution.heavy_tailed:
        return f"{value:,.2f}"
    return f"{value:,.4g}"


def _counterfactual(
    explainer: Explainer, row: pd.DataFrame, head: str, evidence: list[dict[str, Any]], notes: list[str]
) -> dict[str, Any]:
    result = explainer.explain(row, method="counterfactual", head=head)
    evidence.append(result.to_dict())
    notes += [n for n in result.meta.notes if n not in notes]
    found = result.data["rows"][0]
    lo, hi = found["desired_range"]
    model = explainer.bundle.heads[head].head
    if model.classification:
        target = f"below {_shown(explainer, head, hi)}"
    elif hi is None:
        target = f"to at least {_shown(explainer, head, lo)}"
    else:
        target = f"between {_shown(explainer, head, lo)} and {_shown(explainer, head, hi)}"
    contract = explainer.contract
    options = []
    for option in found["counterfactuals"]:
        changes = []
        for feature, change in option["changes"].items():
            column = contract.columns.get(feature)
            what = short_description(column, feature)
            changes.append(
                f"{what}: {describe_value(column, change['from'])} → {describe_value(column, change['to'])}"
            )
        options.append({"changes": changes, "shown": _shown(explainer, head, option["prediction"])})
    return {
        "found": found["found"],
        "reason": found["reason"],
        "target": target,
        "options": options,
        "held_fixed": [short_description(contract.columns.get(n), n) for n in explainer.immutable],
    }


def _not_used(contract: Contract, explainer: Explainer) -> list[dict[str, str]]:
    out = []
    adjusted = bool(explainer.bundle.adjustments)
    for name, column in contract.columns.items():
        if column.role is Role.protected:
            why = "used only to check that the model treats groups fairly"
            if adjusted:
                why += ", and to apply the fairness adjustment that evens out its predictions across groups"
            out.append({"description": short_description(column, name), "why": why})
    return out


def _md(text: Any) -> str:
    """Text from data, made inert in Markdown tables and emphasis."""
    return str(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("\n", " ")


def _html(text: str) -> str:
    import html

    return html.escape(text)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2328; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
code {{ background: #f6f8fa; padding: 0 .2rem; font-size: .85em; }}
</style></head><body>
{body}
</body></html>
"""
