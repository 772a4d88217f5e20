"""Explanation benchmark: TreeSHAP in process for 1 row and 1,000 rows, beside the sampling methods.

A model is trained on 100K generated customers (4 monthly extracts, default settings, untimed), so the
trees are the size ``engage run`` ships. Timed, after one warm-up call each (imports and fitted
explainers are set-up, not per-row cost):

* ``tree_shap_1_row_ms``: the median of 300 ``Explainer.explain([row], "tree_shap")`` calls on a row
  as a server receives it (a mapping of column to value, parsed from JSON), the whole call (encoding,
  TreeSHAP, additivity check, prediction, result object) -- issue budget 2 ms. Recorded beside it:
  the same from a one-row DataFrame (pandas adds its own cost) and the bare TreeSHAP
  (``TreeShap.shap_values`` on an encoded row);
* ``tree_shap_1000_rows_s``: one call on 1,000 rows -- budget 1 s;
* per row, recorded with no budget (the ratio to TreeSHAP is the point): KernelSHAP (default budget
  of 1,000 coalitions, 50 background rows), anchors, LIME, DiCE counterfactual, reason codes.

    python benchmarks/bench_explain.py --out benchmarks/results/explain.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from _results import write_results

AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
BUDGETS = {"tree_shap_1_row_ms": 2.0, "tree_shap_1000_rows_s": 1.0}
ROWS = 100_000
SAMPLED = 5  # rows timed for each sampling method


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/explain.json"))
    args = parser.parse_args()

    import xgboost

    from engage.contract import load_contract
    from engage.explain import Explainer, ExplainSettings
    from engage.features import design_matrix
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.training import train

    contract = load_contract()
    frame = generate_customers(SyntheticConfig(rows=ROWS, seed=1, as_of=AS_OF, snapshots=4)).frame
    bundle = train(frame, contract).bundle("xgboost")
    settings = ExplainSettings()
    explainer = Explainer(bundle, contract, frame, settings=settings)
    churn = bundle.heads["churn"]

    rows = [frame.iloc[[i]] for i in range(300)]
    records = [r.iloc[0].to_dict() for r in rows]
    explainer.explain([records[0]], method="tree_shap")
    one, from_frame = [], []
    for record, row in zip(records, rows, strict=True):
        t = time.perf_counter()
        explainer.explain([record], method="tree_shap")
        one.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        explainer.explain(row, method="tree_shap")
        from_frame.append((time.perf_counter() - t) * 1e3)
    tree = explainer.tree_shap("churn")
    encoded = [explainer.encoder.encode(r) for r in rows]
    bare = []
    for x in encoded:
        t = time.perf_counter()
        tree.shap_values(x)
        bare.append((time.perf_counter() - t) * 1e3)

    batch = frame.iloc[1000:2000]
    explainer.explain(batch, method="tree_shap")
    t = time.perf_counter()
    explained = explainer.explain(batch, method="tree_shap")
    thousand = time.perf_counter() - t

    # the risky customers: where counterfactuals and anchors have work to do
    p = churn.predict(design_matrix(frame.iloc[:20_000], bundle.features))
    risky = frame.iloc[np.argsort(-p)[: SAMPLED + 1]].reset_index(drop=True)
    per_row: dict[str, float] = {}
    found = 0
    for method in ("reasons", "kernel_shap", "anchors", "lime", "counterfactual"):
        explainer.explain(risky.iloc[[SAMPLED]], method=method)  # warm-up: imports, fitted explainer
        times = []
        for i in range(SAMPLED):
            t = time.perf_counter()
            result = explainer.explain(risky.iloc[[i]], method=method)
            times.append((time.perf_counter() - t) * 1e3)
            if method == "counterfactual":
                found += bool(result.data["rows"][0]["found"])
        per_row[method] = statistics.median(times)

    tree_ms = statistics.median(one)
    observed = {"tree_shap_1_row_ms": tree_ms, "tree_shap_1000_rows_s": thousand}
    trees = churn.best_iteration + 1 if churn.best_iteration is not None else None
    cases = {
        "model": {
            "rows": ROWS,
            "churn_trees": trees,
            "max_depth": 6,
            "features": len(bundle.features.columns),
        },
        "tree_shap_1_row": {
            "median_ms": round(tree_ms, 3),
            "p95_ms": round(float(np.percentile(one, 95)), 3),
            "from_dataframe_median_ms": round(statistics.median(from_frame), 3),
            "bare_shap_values_median_ms": round(statistics.median(bare), 3),
            "calls": len(one),
        },
        "tree_shap_1000_rows": {
            "seconds": round(thousand, 4),
            "max_additivity_error": explained.data["additivity"]["max_abs_error"],
        },
        "per_row_ms_median": {k: round(v, 1) for k, v in per_row.items()},
        "ratio_to_tree_shap_1_row": {k: round(v / tree_ms) for k, v in per_row.items()},
        "settings": settings.model_dump(),
        "counterfactuals_found": f"{found} of {SAMPLED}",
    }
    return write_results(args.out, "explain", BUDGETS, observed, cases, {"xgboost": xgboost.__version__})


if __name__ == "__main__":
    raise SystemExit(main())
