"""The one JSON layout of every benchmark: machine, budgets, observed figures, verdicts, cases."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path


def write_results(
    out: Path,
    benchmark: str,
    budgets: dict[str, float],
    observed: dict[str, float],
    cases: Mapping[str, object],
    versions: dict[str, str] | None = None,
) -> int:
    """Write the results file, print each observed figure against its budget; 0 when all are within."""
    within = {k: v <= budgets[k] for k, v in observed.items()}
    results = {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            **(versions or {}),
        },
        "budgets": budgets,
        "observed": observed,
        "within_budget": within,
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    for k, v in observed.items():
        print(f"  {k:30s} {v:9.2f}  (budget {budgets[k]:g}) {'ok' if within[k] else 'OVER BUDGET'}")
    return 0 if all(within.values()) else 1
