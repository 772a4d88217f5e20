"""Coverage of src/engage from the last measured test run: a table per package, a JSON summary (`make
test` and `make coverage` write benchmarks/results/coverage.json), and exit 1 under the threshold.

The data is what pytest-cov left in artifacts/coverage/ (.coveragerc). Data files of several runs
(GitHub's test jobs each upload one: ``.coverage.<job>``) are combined first.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".coveragerc"
PACKAGE = ROOT / "src" / "engage"


def package_of(path: str) -> str:
    """``src/engage/governance/_store.py`` -> ``governance``; a module directly under engage -> ``engage``."""
    parts = Path(path).resolve().relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "engage"


def percent(covered: int, statements: int) -> float:
    return round(100 * covered / statements, 1) if statements else 100.0


def measure(data_file: Path | None = None) -> dict[str, Any]:
    """Per-package and total statement coverage of ``data_file`` (default: .coveragerc's), after combining
    the ``<data_file>.*`` files beside it if there are any."""
    import coverage

    # (data_file=None would mean "no data file" to coverage: leave the argument out instead)
    where = {"data_file": str(data_file)} if data_file else {}
    cov = coverage.Coverage(config_file=str(CONFIG), **where)  # type: ignore[arg-type]
    data_file = Path(cov.config.data_file)
    if list(data_file.parent.glob(data_file.name + ".*")):
        cov.combine(strict=True)
        cov.save()
    elif not data_file.exists():
        raise typer.BadParameter(
            f"no coverage data at {data_file}: run `make test` (or a test-* target) first"
        )
    cov.load()
    report = data_file.parent / "coverage.json"
    try:
        cov.json_report(outfile=str(report), include=[str(PACKAGE / "*")])
    except coverage.exceptions.NoDataError as e:
        raise typer.BadParameter(
            f"{data_file} holds no line of src/engage: the tests run imported none of it"
        ) from e
    files = json.loads(report.read_text(encoding="utf-8"))["files"]
    packages: dict[str, dict[str, int]] = {}
    for path, figures in files.items():
        package = packages.setdefault(package_of(path), {"statements": 0, "covered": 0})
        package["statements"] += figures["summary"]["num_statements"]
        package["covered"] += figures["summary"]["covered_lines"]
    statements = sum(p["statements"] for p in packages.values())
    covered = sum(p["covered"] for p in packages.values())
    return {
        "total": {"percent": percent(covered, statements), "statements": statements, "covered": covered},
        "packages": {
            name: {"percent": percent(p["covered"], p["statements"]), **p}
            for name, p in sorted(packages.items())
        },
    }


def main(
    command: Annotated[str, typer.Option(help="The command that produced the data (recorded)")],
    fail_under: Annotated[float, typer.Option(help="Minimum total percent")] = 80.0,
    out: Annotated[Path, typer.Option(help="Where the JSON goes")] = ROOT / "artifacts/coverage/summary.json",
    data_file: Annotated[Path | None, typer.Option(help="Coverage data (default: .coveragerc's)")] = None,
    note: Annotated[str, typer.Option(help="What else a reader should know about the run (recorded)")] = "",
) -> None:
    import coverage

    figures = measure(data_file)
    total = figures["total"]["percent"]
    passed = total >= fail_under
    result = {
        "check": "coverage",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "coverage": coverage.__version__,
        },
        "command": command,
        **({"note": note} if note else {}),
        "scope": "statements of src/engage run inside the pytest process; the subprocesses the tests start "
        "(the engage CLI, the servers, kfp.local steps) are not measured (docs/ci.md says why)",
        "fail_under_percent": fail_under,
        "passed": passed,
        **figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"coverage of src/engage ({command}):")
    for name, p in sorted(figures["packages"].items(), key=lambda item: item[1]["percent"]):
        print(f"  {name:14s} {p['percent']:5.1f} %  ({p['covered']}/{p['statements']} statements)")
    required = f"at least {fail_under:g} % required" if fail_under else "reported, not enforced here"
    print(f"  {'TOTAL':14s} {total:5.1f} %  ({required})  -> {out}")
    if not passed:
        print(f"coverage {total:.1f} % is under {fail_under:g} %", file=sys.stderr)
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
