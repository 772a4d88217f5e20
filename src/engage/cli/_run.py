"""``engage run``: the main job. Generate a customer table, run the data-quality gate on it (contract
checks with the Great Expectations suite, remediation, reports, metrics, lineage), score the checks
against the defects the generator recorded, then train the three heads on the remediated table and judge
them by the promotion policy, judge fairness (with mitigation), explain the chosen model (global
importance, and the right-to-explanation document of the customer most at risk) and write its model
card. Promotion joins here as the pipeline grows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from engage.contract import Contract
    from engage.settings import RunSettings


def run(
    rows: int | None = typer.Option(None, "--rows", "-n", help="Customers to generate (default 100,000)."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Seed (default 42)."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Output folder (default artifacts/run)."),
) -> None:
    """Run the main job on embedded defaults (environment: ENGAGE_RUN_*; flags win)."""
    from engage.contract import load_contract
    from engage.quality import run_gate, score_defects
    from engage.settings import RunSettings
    from engage.synthetic import DEFECT_CHECKS, generate_customers

    from ._console import out, print_defect_scores, print_report, remediation_line, stage, verdict_line
    from ._data import defects_path, synthetic_config, write_generated

    overrides = {k: v for k, v in {"rows": rows, "seed": seed, "out_dir": out_dir}.items() if v is not None}
    settings = RunSettings(**overrides)  # type: ignore[arg-type]
    contract = load_contract(settings.contract)
    config = synthetic_config(
        settings.rows,
        settings.seed,
        None,
        settings.defect_rate,
        [],
        settings.bias,
        settings.drift,
        settings.snapshots,
    )
    table_path = settings.out_dir / "customers.parquet"
    gate_dir = settings.out_dir / "quality"

    with stage(
        f"generate {settings.rows:,} synthetic customers in {settings.snapshots} monthly extract(s) (seed {settings.seed})"
    ):
        generated = generate_customers(config)
    with stage(f"write {table_path}"):
        write_generated(generated, table_path)
    with stage(f"data-quality gate: contract {contract.contract} {contract.version} with Great Expectations"):
        gate = run_gate(
            table_path, contract, out_dir=gate_dir, great_expectations=settings.great_expectations
        )

    console = out()
    report = gate.report
    roles: dict[str, int] = {}
    for col in contract.columns.values():
        roles[col.role.value] = roles.get(col.role.value, 0) + 1
    console.print(
        f"\n[bold]Data[/]: {report.rows:,} rows x {report.columns} columns "
        f"({', '.join(f'{n} {r}' for r, n in roles.items())}); "
        f"{int(gate.validation.failing_rows().sum()):,} rows break at least one row-level check"
    )
    print_report(report)
    if len(generated.defects):
        checks = {k.value: v for k, v in DEFECT_CHECKS.items()}
        print_defect_scores(score_defects(gate.validation, generated.defects, checks))
    console.print(f"[bold]Remediation[/]: {remediation_line(gate)}")
    console.print(f"\n[bold]{verdict_line(gate)}[/]")
    if len(generated.defects):
        console.print(
            f"[dim]{len(generated.defects):,} rows were spoiled on purpose (ENGAGE_RUN_DEFECT_RATE="
            f"{settings.defect_rate:g} per defect kind); set it to 0 for a clean table.[/]"
        )
    console.print(f"table: {table_path} (ground truth: {defects_path(table_path)})")
    console.print(
        f"gate outputs: {gate_dir}/ (summary.html, report.json, data_docs/index.html, remediated.parquet, quarantine.parquet, metrics.prom, lineage.jsonl)"
    )
    if gate.verdict == "fail":
        raise typer.Exit(1)
    if settings.train:
        _train(settings, contract, gate_dir / "remediated.parquet")


def _train(settings: RunSettings, contract: Contract, table: Path) -> None:
    from engage.training import TrainConfig, train_table

    from ._console import out, print_training, stage, training_verdict_line

    train_dir = settings.out_dir / "training"
    with stage(f"train engagement, churn and LTV heads on {table}"):
        result = train_table(
            table, contract, train_dir, config=TrainConfig(seed=settings.seed), champion=settings.champion
        )
    console = out()
    console.print()
    print_training(result)
    console.print(f"\n[bold]{training_verdict_line(result)}[/]")
    console.print(
        f"training outputs: {train_dir}/ (model/, baseline/, evaluation.json, report.html, kfp/, test_predictions.parquet)"
    )
    if settings.fairness:
        from engage.fairness import assess_training, write_fairness
        from engage.tables import conform, read_table

        from ._fairness import print_fairness

        fair_dir = settings.out_dir / "fairness"
        frame = conform(read_table(table), contract).frame  # the rows training saw, in the same order
        with stage("fairness gate: measure, mitigate, choose"):
            fair = assess_training(result, frame)
            write_fairness(fair, fair_dir)
        console.print()
        print_fairness(fair)
        console.print(
            f"fairness outputs: {fair_dir}/ (fairness.json, report.html, summary.md, model/ unless it failed)"
        )
    if settings.explain:
        fairness_dir = settings.out_dir / "fairness"
        _explain_and_card(
            settings,
            contract,
            table,
            train_dir,
            fairness_dir if (fairness_dir / "fairness.json").is_file() else None,
        )


def _explain_and_card(
    settings: RunSettings, contract: Contract, table: Path, train_dir: Path, fair_dir: Path | None
) -> None:
    """Global explanations of the model that would ship, one customer's document, and the model card."""
    import json

    from engage._io import write_text_atomic
    from engage.explain import Explainer, customer_explanation, global_summary
    from engage.features import design_matrix
    from engage.modelcard import build_model_card, write_model_card
    from engage.policy import load_policy
    from engage.tables import conform, read_table
    from engage.training import load_bundle

    from ._console import out, stage

    model_dir = (
        fair_dir / "model" if fair_dir is not None and (fair_dir / "model").is_dir() else train_dir / "model"
    )
    explain_dir = settings.out_dir / "explanations"
    frame = conform(read_table(table), contract).frame
    bundle = load_bundle(model_dir)
    explainer = Explainer(bundle, contract, frame)
    with stage(f"explanations of {model_dir}: mean |SHAP| and permutation importance"):
        summary = global_summary(explainer, frame, contract, load_policy(), seed=settings.seed)
        explain_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(explain_dir / "global.json", json.dumps(summary.to_dict(), indent=2) + "\n")
    head = explainer.default_head
    risk = bundle.heads[head].predict(design_matrix(frame, bundle.features))
    customer = str(frame[contract.primary_key[0]].iloc[int(risk.argmax())])
    with stage(f"right-to-explanation document of customer {customer} (highest {head} prediction)"):
        doc = customer_explanation(explainer, frame, customer)
        doc.write(explain_dir / "customers" / customer)
    with stage("model card"):
        card = build_model_card(
            train_dir,
            fairness_dir=fair_dir,
            explanations=explain_dir / "global.json",
            contract=contract,
            model_dir=model_dir,
        )
        write_model_card(card, settings.out_dir / "card")
    console = out()
    console.print(
        f"\n[bold]Explanations[/]: customer {customer}: " + " ".join(r["text"] for r in doc.reasons[head][:2])
    )
    console.print(
        f"explanation outputs: {explain_dir}/ (global.json, customers/{customer}/explanation.md|html|json)\n"
        f"model card: {settings.out_dir / 'card'}/ (model_card.md, model_card.html, model_card.json)"
    )
