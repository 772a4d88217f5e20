"""Write a V1 predict request holding rows of a registry version's drift reference: rows the contract
accepts and the model was trained on (what ``engage serve --check`` sends). Used by
scripts/k8s/deploy-local.sh for its one curl against the InferenceService on kind.

    python scripts/k8s/sample_request.py --registry artifacts/registry --ref production --out request.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def request_body(reference: str, rows: int = 1) -> dict[str, Any]:
    """``{"instances": [...]}`` with the first ``rows`` rows of a ``reference.parquet`` (any fsspec URI)."""
    from engage.tables import read_table

    frame = read_table(reference).head(rows)
    if frame.empty:
        raise ValueError(f"{reference} holds no rows")
    return {"instances": json.loads(frame.to_json(orient="records"))}


def reference_of(registry: str, ref: str) -> str:
    """The drift reference table of the version ``ref`` names in ``registry``."""
    from engage.registry import Registry

    version = Registry(registry).get(ref)
    return f"{version.uri.rstrip('/')}/drift_reference/reference.parquet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="artifacts/registry")
    parser.add_argument("--ref", default="production")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        body = request_body(reference_of(args.registry, args.ref), args.rows)
    except Exception as error:  # one line, as the engage CLI prints its errors
        print(f"sample_request.py: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
