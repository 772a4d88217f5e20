"""``engage explain``: a customer's right-to-explanation document, method results, or global summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engage._dates import parse_instant
from engage.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from engage.contract import Contract
    from engage.explain import CustomerExplanation


def explain(
    data: Path = typer.Argument(..., help="Parquet or CSV table holding the customer (and reference rows)."),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Model bundle folder (engage train's or fairness's model/)."
    ),
    customer: str | None = typer.Option(
        None, "--customer", help="Customer id (primary key): write their plain-language explanation."
    ),
    method: list[str] = typer.Option(
        [],
        "--method",
        help="Also run this method for the customer (repeatable): tree_shap, kernel_shap, anchors, lime, counterfactual, reasons.",
    ),
    head: str | None = typer.Option(
        None, "--head", help="The decision explained and contested (default: the first classification head)."
    ),
    global_: bool = typer.Option(
        False, "--global", help="Write global.json: mean |SHAP| and permutation importance per head."
    ),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file (default: customers)."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Promotion policy (its primary metrics rank permutation importance)."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out-dir",
        "-o",
        help="Where to write (default: artifacts/explain/<customer> or artifacts/explain/global).",
    ),
    licence_clean: bool | None = typer.Option(
        None,
        "--licence-clean/--any-licence",
        help="Only OSI-licensed methods (no alibi); default: ENGAGE_EXPLAIN_LICENCE_CLEAN.",
    ),
    now: str | None = typer.Option(
        None, "--now", help="Time stamped on the document, ISO 8601 (default: now)."
    ),
) -> None:
    """Explain predictions: one customer's document (prediction, reasons, counterfactual, how to contest),
    or the model's global feature importance for the model card."""
    from engage.cli.console import err, stage
    from engage.contract import load_contract
    from engage.explain import Explainer, ExplainSettings, check_method, global_summary
    from engage.policy import load_policy
    from engage.tables import read_table
    from engage.training import load_bundle

    if customer is None and not global_:
        raise ConfigError("say what to explain: --customer ID (one customer's document) or --global")
    if method and customer is None:
        raise ConfigError("--method explains one customer: give --customer ID too")
    spec = load_contract(contract)
    settings = ExplainSettings() if licence_clean is None else ExplainSettings(licence_clean=licence_clean)
    bundle = load_bundle(model)
    frame = _typed(read_table(data), spec)
    explainer = Explainer(bundle, spec, frame, settings=settings)
    if global_:
        target = out_dir if out_dir is not None and customer is None else Path("artifacts/explain/global")
        with stage(f"global explanations of {model} on {min(len(frame), 2000):,} rows"):
            summary = global_summary(explainer, frame, spec, load_policy(policy))
        from engage._io import write_text_atomic

        target.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target / "global.json", json.dumps(summary.to_dict(), indent=2) + "\n")
        err().print(f"outputs: {target}/global.json", style="dim")
    if customer is not None:
        from engage.explain import customer_explanation

        target = out_dir if out_dir is not None else Path("artifacts/explain") / _safe(customer)
        decision = head or explainer.default_head
        for name in method:  # refuse a method before any work is done
            learner = bundle.heads[decision].learner if decision in bundle.heads else "xgboost"
            check_method(name, settings, learner=learner, head=decision)
        with stage(f"explanation of customer {customer}"):
            doc = customer_explanation(explainer, frame, customer, head=head, now=parse_instant(now, "--now"))
            for name in method:
                doc.evidence.append(
                    explainer.explain(
                        _row(frame, spec, customer), method=name, head=doc.decision_head
                    ).to_dict()
                )
        doc.write(target)
        _print(doc)
        err().print(f"outputs: {target}/ (explanation.md, explanation.html, explanation.json)", style="dim")


def _typed(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The table with contract dtypes on the columns it has (a scoring table has no label columns)."""
    from engage.tables import conform

    present = {k: v for k, v in contract.columns.items() if k in frame.columns}
    partial = contract.model_copy(update={"columns": present})
    return conform(frame, partial).frame


def _row(frame: pd.DataFrame, contract: Contract, customer: str) -> pd.DataFrame:
    key = contract.primary_key[0]
    return frame[frame[key].astype("string") == customer].tail(1).reset_index(drop=True)


def _safe(customer: str) -> str:
    """A folder name from an id: path separators and dots cannot climb out of artifacts/explain."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]", "_", customer).lstrip(".")
    return name or "customer"


def _print(doc: CustomerExplanation) -> None:
    from rich.table import Table

    from engage.cli.console import out

    console = out()
    table = Table(title=f"customer {doc.customer_id}", title_justify="left")
    table.add_column("prediction")
    table.add_column("value")
    for p in doc.predictions:
        table.add_row(p["name"], p["shown"])
    console.print(table)
    for reason in doc.reasons[doc.decision_head]:
        console.print(f"  - {reason['text']}")
    cf = doc.counterfactual
    if cf is not None:
        if cf["found"] and cf["options"]:
            console.print(f"  what would change it: {'; '.join(cf['options'][0]['changes'])}")
        elif not cf["found"]:
            console.print(f"  what would change it: {cf['reason']}")
