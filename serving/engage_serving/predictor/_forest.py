"""The trees of every xgboost head compiled to one Python function, for scoring a few rows fast.

xgboost's ``predict`` costs about 0.2 ms per booster for one row on these machines, whatever the model
size: the fixed cost of its C API call (array interface, JSON configuration, threads) dwarfs walking
~100 trees of depth 6. The predictor scores one row or a few with :class:`CompiledForest` instead: every
tree of every head becomes one nested conditional expression in a generated function (what treelite
does to C, done to Python bytecode: no compiler needed in the image), and the leaves are summed in
float32, in tree order, from the same base margin, as xgboost's CPU predictor sums them. Larger batches
go to xgboost (``inplace_predict``), which is faster there.

Both paths must give the same margins: :meth:`CompiledForest.agreement` compares them on real rows when
the model loads, and the predictor uses the compiled forest only if they agree within 1e-6.

Split rules follow xgboost's predictor: a numeric split sends ``value < split_condition`` (compared in
float32) left and a missing value to its default side; a categorical split sends the categories listed
on the node right and any other category left; a missing category goes to the default side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CompiledForest", "base_margin"]

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_accumulate = np.add.accumulate
#: a missing category is passed to the generated code as this code (never a real level)
MISSING_CODE = -1


@dataclass(frozen=True)
class _Head:
    name: str
    start: int  # its first leaf in the generated tuple
    stop: int
    base: np.float32


def base_margin(model: Mapping[str, Any]) -> np.float32:
    """The margin xgboost starts every prediction from: its ``base_score`` on the margin scale, computed
    with float32 operations as xgboost's ``ProbToMargin`` does (``-logf(1.0f / p - 1.0f)``, ``logf(p)``)."""
    score = np.float32(float(model["learner_model_param"]["base_score"].strip("[]")))
    objective = model["objective"]["name"]
    if objective in ("binary:logistic", "reg:logistic"):
        return np.float32(-np.log(np.float32(1.0) / score - np.float32(1.0)))
    if objective in ("reg:tweedie", "count:poisson", "reg:gamma"):
        return np.float32(np.log(score))
    return score


class CompiledForest:
    """The first ``iterations[head]`` trees of each head's booster as one generated function."""

    def __init__(
        self, boosters: Mapping[str, Any], iterations: Mapping[str, int | None], categorical: Sequence[int]
    ) -> None:
        self.categorical = frozenset(categorical)
        expressions: list[str] = []
        self.heads: list[_Head] = []
        #: per feature index, the thresholds of the numeric splits on it (to probe the trees with)
        self.split_points: dict[int, list[float]] = {}
        for name, booster in boosters.items():
            model = json.loads(booster.save_raw("json"))["learner"]
            if model["gradient_booster"]["name"] != "gbtree":
                raise ValueError(f"head {name}: only gbtree boosters are compiled")
            trees = model["gradient_booster"]["model"]["trees"]
            limit = iterations.get(name)
            trees = trees if limit is None else trees[:limit]
            for tree in trees:
                for f, t, kind, child in zip(
                    tree["split_indices"], tree["split_conditions"], tree["split_type"], tree["left_children"],
                    strict=True,
                ):  # fmt: skip
                    if child != -1 and kind == 0:
                        self.split_points.setdefault(int(f), []).append(float(t))
            start = len(expressions)
            base = base_margin(model)
            expressions.append(_f32(float(base)))  # the sum starts from the base margin
            expressions.extend(_expression(tree, 0) for tree in trees)
            self.heads.append(_Head(name, start, len(expressions), base))
        source = (
            "def leaves(x):\n    return (\n" + "".join(f"        {e},\n" for e in expressions) + "    )\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, "<engage compiled forest>", "exec"), namespace)  # nosec B102 # source holds only xgboost's numbers
        self._leaves = namespace["leaves"]
        self.trees = len(expressions) - len(self.heads)

    def row_values(self, row: Sequence[float]) -> list[float]:
        """A row's feature values as the generated code reads them: float32-exact numbers, and level
        codes as ints (:data:`MISSING_CODE` for a missing one)."""
        values: list[float] = np.asarray(row, dtype=np.float32).tolist()
        for j in self.categorical:
            v = values[j]
            values[j] = MISSING_CODE if v != v else int(v)
        return values

    def margins_row(self, values: Sequence[float]) -> dict[str, float]:
        """Each head's margin for one row of :meth:`row_values`."""
        terms = np.array(self._leaves(values), dtype=np.float32)
        # per head, a sequential float32 sum from the base margin, as xgboost's predictor adds them up
        # (accumulate is sequential; sum would add pairwise and round differently)
        return {h.name: float(_accumulate(terms[h.start : h.stop])[-1]) for h in self.heads}

    def margins(self, X: F32) -> dict[str, F64]:
        rows = [self.margins_row(self.row_values(row)) for row in np.asarray(X, dtype=np.float32)]
        return {h.name: np.asarray([r[h.name] for r in rows], dtype=np.float64) for h in self.heads}

    def agreement(self, X: F32, expected: Mapping[str, F64]) -> float:
        """The largest difference between these margins and ``expected`` (xgboost's) on ``X``."""
        got = self.margins(X)
        return max(
            (
                float(np.max(np.abs(got[h.name] - np.asarray(expected[h.name], dtype=np.float64))))
                for h in self.heads
            ),
            default=0.0,
        )


def _f32(value: float) -> str:
    return repr(float(np.float32(value)))


def _expression(tree: Mapping[str, Any], node: int) -> str:
    left, right = tree["left_children"][node], tree["right_children"][node]
    if left == -1:
        return _f32(tree["split_conditions"][node])
    feature = tree["split_indices"][node]
    default_left = bool(tree["default_left"][node])
    if tree["split_type"][node] == 1:
        listed = _categories(tree, node)
        # listed categories go right; others (and unseen ones) left; a missing one to the default side
        test = f"x[{feature}] not in {listed!r}" if default_left else f"-1 < x[{feature}] not in {listed!r}"
        if not listed:
            test = "True" if default_left else f"x[{feature}] != -1"
    else:
        threshold = _f32(tree["split_conditions"][node])
        # NaN compares false: `not x >= t` sends it left, `x < t` right
        test = f"not x[{feature}] >= {threshold}" if default_left else f"x[{feature}] < {threshold}"
    return f"({_expression(tree, left)} if {test} else {_expression(tree, right)})"


def _categories(tree: Mapping[str, Any], node: int) -> frozenset[int]:
    nodes = tree.get("categories_nodes", [])
    if node not in nodes:
        return frozenset()
    k = nodes.index(node)
    start, size = tree["categories_segments"][k], tree["categories_sizes"][k]
    return frozenset(int(c) for c in tree["categories"][start : start + size])
