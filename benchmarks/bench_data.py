"""Data benchmarks: generator speed and peak memory, contract validation and gate speed, CLI start-up.

Each case runs in a fresh Python process (so import cost and peak RSS belong to that case alone) and
reports wall time and peak resident memory. Results and the budgets they are held to go to one JSON file.

    python benchmarks/bench_data.py --out benchmarks/results/data.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _results import write_results

AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
#: budgets from the issues: generator 100K <= 20 s, 1M <= 180 s and <= 4 GiB; validating 1M <= 60 s
#: (held on the whole gate: GX suite, Engage checks, remediation and every output)
BUDGETS = {
    "generate_100k_seconds": 20.0,
    "generate_1m_seconds": 180.0,
    "generate_1m_peak_rss_mib": 4096.0,
    "validate_1m_seconds": 60.0,
    "gate_1m_seconds": 60.0,
    "cli_help_seconds": 1.0,
}


def worker(case: str, rows: int, path: str) -> dict[str, float]:
    """Run one case in this process; returns its figures."""
    t0 = time.perf_counter()
    if case == "generate":
        from engage.synthetic import DefectKind, SyntheticConfig, generate_customers
        from engage.tables import write_table

        imported = time.perf_counter()
        config = SyntheticConfig(rows=rows, seed=1, as_of=AS_OF, defects=dict.fromkeys(DefectKind, 0.002))
        generated = generate_customers(config)
        done = time.perf_counter()
        write_table(generated.frame, path)
        written = time.perf_counter()
        figures = {"generate_seconds": done - imported, "write_seconds": written - done}
    elif case == "gate":
        from engage.contract import load_contract
        from engage.quality import run_gate

        contract = load_contract()
        imported = time.perf_counter()
        gate = run_gate(Path(path), contract, out_dir=Path(path).with_suffix(".gate"), now=AS_OF)
        figures = {
            "gate_seconds": time.perf_counter() - imported,
            "quarantined": float(gate.rows_quarantined),
        }
    else:
        from engage.contract import load_contract
        from engage.quality import validate
        from engage.tables import read_table

        contract = load_contract()
        imported = time.perf_counter()
        frame = read_table(path)
        read = time.perf_counter()
        result = validate(frame, contract, now=AS_OF)
        done = time.perf_counter()
        figures = {
            "read_seconds": read - imported,
            "validate_seconds": done - read,
            "checks": float(len(result.report.results)),
        }
    figures["import_seconds"] = imported - t0
    figures["total_seconds"] = time.perf_counter() - t0
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def run_case(case: str, rows: int, path: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", case, "--rows", str(rows), "--path", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {case} {rows:>9,} rows: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    return figures


def cli_help_seconds(repeat: int = 5) -> float:
    engage = str(Path(sys.executable).parent / "engage")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([engage, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data.json"))
    parser.add_argument("--quick", action="store_true", help="100K rows only (skip the 1M cases)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.path)))
        return 0

    import numpy
    import pandas

    cases: dict[str, dict[str, float]] = {}
    sizes = [100_000] if args.quick else [100_000, 1_000_000]
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sizes:
            path = Path(tmp) / f"customers_{rows}.parquet"
            label = "100k" if rows == 100_000 else "1m"
            cases[f"generate_{label}"] = run_case("generate", rows, path)
            cases[f"validate_{label}"] = run_case("validate", rows, path)
            cases[f"gate_{label}"] = run_case("gate", rows, path)
    cases["cli_help"] = {"median_seconds": cli_help_seconds()}

    observed = {
        "generate_100k_seconds": cases["generate_100k"]["generate_seconds"]
        + cases["generate_100k"]["write_seconds"],
        "cli_help_seconds": cases["cli_help"]["median_seconds"],
    }
    if "generate_1m" in cases:
        observed["generate_1m_seconds"] = (
            cases["generate_1m"]["generate_seconds"] + cases["generate_1m"]["write_seconds"]
        )
        observed["generate_1m_peak_rss_mib"] = cases["generate_1m"]["peak_rss_mib"]
        observed["validate_1m_seconds"] = (
            cases["validate_1m"]["read_seconds"] + cases["validate_1m"]["validate_seconds"]
        )
        observed["gate_1m_seconds"] = cases["gate_1m"]["gate_seconds"]
    versions = {"numpy": numpy.__version__, "pandas": pandas.__version__}
    return write_results(args.out, "data", BUDGETS, observed, cases, versions)


if __name__ == "__main__":
    sys.exit(main())
