"""``engage generate`` and ``engage validate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engage._dates import parse_instant

from ._options import current_hour, parse_rates

if TYPE_CHECKING:
    from engage.synthetic import GeneratedTable, SyntheticConfig


def synthetic_config(
    rows: int,
    seed: int,
    as_of: str | None,
    defect_rate: float,
    defect: list[str],
    bias: float,
    drift: float,
    snapshots: int = 1,
) -> SyntheticConfig:
    """Build the generator's config from command-line values; bad values name their option."""
    from pydantic import ValidationError

    from engage.errors import ConfigError
    from engage.synthetic import DefectKind, SyntheticConfig

    rates: dict[str, float] = dict.fromkeys(DefectKind, defect_rate) if defect_rate else {}
    for kind, rate in parse_rates(defect, "--defect").items():
        if kind not in DefectKind.__members__:
            raise ConfigError(
                f"--defect: unknown defect kind {kind!r}; expected one of {', '.join(DefectKind)}"
            )
        rates[kind] = rate
    try:
        return SyntheticConfig(
            rows=rows,
            seed=seed,
            as_of=parse_instant(as_of, "--as-of") or current_hour(),
            defects={DefectKind(k): v for k, v in rates.items() if v > 0},
            bias=bias,
            drift=drift,
            snapshots=snapshots,
        )
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise ConfigError(
            f"--{where.replace('_', '-')}: {first['msg'].removeprefix('Value error, ')}"
        ) from None


def defects_path(out: Path) -> Path:
    """Where the ground truth of a generated table goes: ``x.parquet`` -> ``x.defects.parquet``."""
    return out.with_name(out.name.removesuffix(".parquet") + ".defects.parquet")


def write_generated(generated: GeneratedTable, out: Path) -> None:
    from engage.tables import write_table

    ground_truth = defects_path(out)
    write_table(generated.frame, out)
    if len(generated.defects):
        write_table(generated.defects, ground_truth)
    else:
        ground_truth.unlink(missing_ok=True)


def generate(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Parquet file to write (its ground truth goes beside it)."
    ),
    rows: int = typer.Option(100_000, "--rows", "-n", help="Number of customers."),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed: same seed and --as-of, same bytes."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Snapshot time, ISO 8601 (default: this hour, UTC)."
    ),
    defect_rate: float = typer.Option(
        0.0, "--defect-rate", help="Share of rows spoiled with each defect kind."
    ),
    defect: list[str] = typer.Option([], "--defect", help="KIND=RATE for one defect kind (repeatable)."),
    bias: float = typer.Option(0.0, "--bias", help="Bias against the protected group, 0..1."),
    drift: float = typer.Option(0.0, "--drift", help="Distribution shift of the latest signup cohort, 0..1."),
    snapshots: int = typer.Option(
        4,
        "--snapshots",
        help="Monthly extracts stacked in the table, the last at --as-of (train on the earlier).",
    ),
) -> None:
    """Write a synthetic customer table that satisfies the customer contract (unless defects are asked for)."""
    from engage.errors import ConfigError

    if out.suffix.lower() != ".parquet":
        raise ConfigError(f"--out: expected a .parquet file name, got {str(out)!r}")
    config = synthetic_config(rows, seed, as_of, defect_rate, defect, bias, drift, snapshots)

    from engage.cli.console import out as console
    from engage.cli.console import stage
    from engage.synthetic import generate_customers

    with stage(f"generate {rows:,} customers (seed {seed})"):
        generated = generate_customers(config)
    with stage(f"write {out}"):
        write_generated(generated, out)
    spoiled = len(generated.defects)
    console().print(
        f"{len(generated.frame):,} rows x {generated.frame.shape[1]} columns -> {out}"
        + (f"; {spoiled:,} spoiled rows recorded in {defects_path(out)}" if spoiled else "")
    )


def validate(
    data: Path = typer.Argument(..., help="Parquet or CSV table."),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file (default: customers)."
    ),
    out_dir: Path | None = typer.Option(
        None,
        "--out-dir",
        "-o",
        help="Remediate, and write reports, Data Docs, clean table, quarantine, metrics, lineage here.",
    ),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON quality report here."),
    now: str | None = typer.Option(
        None, "--now", help="Reference time for freshness, ISO 8601 (default: now)."
    ),
    gx: bool = typer.Option(
        True, "--gx/--no-gx", help="Judge what it can express with the Great Expectations suite."
    ),
    push_gateway: str | None = typer.Option(
        None, "--push-gateway", help="Push data-quality metrics to this Pushgateway."
    ),
    only_failures: bool = typer.Option(False, "--only-failures", help="List failed rules only."),
) -> None:
    """Check a table against its contract (exit 1 when the gate fails).

    Without --out-dir the verdict is on the table as it is; with it, rows breaking critical row-level
    checks are quarantined and the gate passes when the remediated table does.
    """
    from engage._io import write_text_atomic
    from engage.cli.console import err, out, print_report, remediation_line, stage, verdict_line
    from engage.contract import load_contract
    from engage.quality import run_gate

    spec = load_contract(contract)
    reference = parse_instant(now, "--now")
    with stage(
        f"check {data} against contract {spec.contract}" + (" (with Great Expectations)" if gx else "")
    ):
        gate = run_gate(
            data, spec, out_dir=out_dir, now=reference, great_expectations=gx, push_gateway=push_gateway
        )
    print_report(gate.report, only_failures=only_failures)
    if gate.remediated is not None:
        out().print(f"Remediation: {remediation_line(gate)}")
    if report is not None:
        write_text_atomic(report, gate.report.model_dump_json(indent=2))
    for name, path in gate.outputs.items():
        err().print(f"{name}: {path}", style="dim")
    err().print(verdict_line(gate), style="red" if gate.verdict == "fail" else "green")
    if gate.verdict == "fail":
        raise typer.Exit(1)
