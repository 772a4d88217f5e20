"""``engage card``: the model card of a trained (and fairness-checked) model, as Markdown, HTML and JSON."""

from __future__ import annotations

from pathlib import Path

import typer


def card(
    train_dir: Path = typer.Argument(..., help="Output folder of engage train (evaluation.json, model/)."),
    fairness: Path | None = typer.Option(
        None, "--fairness", "-f", help="Output folder of engage fairness (fairness.json, model/)."
    ),
    explanations: Path | None = typer.Option(
        None, "--explanations", "-e", help="Global explanations JSON (feature importance per head)."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Model bundle to describe (default: fairness/model, else model/)."
    ),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file the model was trained with (default: customers)."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Promotion policy to compare with the one recorded at training (optional)."
    ),
    out_dir: Path = typer.Option(
        Path("artifacts/card"), "--out-dir", "-o", help="Folder for model_card.md, .html and .json."
    ),
) -> None:
    """Write a model's card (Markdown, HTML, JSON) from its training and fairness artifacts.

    The sections are those of "Model Cards for Model Reporting" (Mitchell et al., 2019). Every figure comes
    from the artifacts; the model's version is the SHA-256 of its bundle's manifest. Without --fairness the
    card says fairness was not assessed.
    """
    from engage.cli.console import err, out, stage
    from engage.contract import load_contract
    from engage.modelcard import build_model_card, write_model_card
    from engage.policy import load_policy

    spec = load_contract(contract)
    rules = load_policy(policy) if policy is not None else None
    with stage(f"model card of {train_dir}" + (f" with fairness report {fairness}" if fairness else "")):
        built = build_model_card(
            train_dir,
            fairness_dir=fairness,
            explanations=explanations,
            contract=spec,
            policy=rules,
            model_dir=model,
        )
        written = write_model_card(built, out_dir)
    details = built.model_details
    out().print(f"[bold]model card[/]: {details.name} {details.version}")
    for line in built.summary[1:]:
        out().print(f"  {line}")
    err().print(f"outputs: {out_dir}/ ({', '.join(p.name for p in written.values())})", style="dim")
