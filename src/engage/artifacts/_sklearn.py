"""scikit-learn estimators as skops files (``.skops``), loaded only when every type they hold is trusted.

The check is stricter than skops' own: skops trusts every scikit-learn estimator, every numpy ufunc and
a few containers by default, this module trusts only what is listed (by default
:data:`~engage.artifacts.TRUSTED_SKLEARN_TYPES`). scikit-learn and skops are imported inside the
functions that need them.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engage._io import atomic_path
from engage.artifacts._common import _one_line, _read_artifact, _require_suffix
from engage.artifacts._trusted import TRUSTED_SKLEARN_TYPES
from engage.errors import ArtifactError

SKLEARN_SUFFIX = ".skops"


def save_sklearn(estimator: object, path: Path) -> Path:
    """Save a scikit-learn estimator to ``path`` (``.skops``) with :func:`skops.io.dumps`, atomically."""
    import skops.io  # type: ignore[import-untyped]

    path = Path(path)
    _require_suffix(path, SKLEARN_SUFFIX)
    data: bytes = skops.io.dumps(estimator)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def load_sklearn(path: Path, *, trusted: Sequence[str] = TRUSTED_SKLEARN_TYPES) -> Any:
    """Load a skops file, refusing it unless every type it holds is in ``trusted``.

    The types are read from the file's schema (every type it names) and from
    :func:`skops.io.get_untrusted_types` (what skops itself would refuse) before any object is built.
    A loaded histogram gradient boosting model also has its trees checked, because scikit-learn walks
    them without bounds checks.
    """
    import skops.io

    if isinstance(trusted, str):
        raise TypeError("trusted must be a sequence of type names, not one string")
    path = Path(path)
    data = _read_artifact(path)
    try:
        held = _skops_types(data) | set(skops.io.get_untrusted_types(data=data))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable skops file: {_one_line(e)}") from e
    refused = sorted(held - set(trusted))
    if refused:
        raise ArtifactError(f"{path}: untrusted types refused: {', '.join(refused)}")
    try:
        estimator = skops.io.loads(data, trusted=list(trusted))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable skops file: {_one_line(e)}") from e
    _check_hist_gradient_boosting(estimator, path)
    return estimator


def _skops_types(data: bytes) -> set[str]:
    """Every type a skops file names: each ``__module__.__class__`` of its schema, and bit generators."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            if node.get("__loader__") == "RandomGeneratorNode":
                # numpy names the bit generator class in a plain string of the state (skops resolves it
                # with getattr(numpy.random, name)), so it is a type too
                try:
                    name = json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
                except (KeyError, TypeError, ValueError):
                    name = None
                if not isinstance(name, str):
                    raise ValueError("a numpy random generator without a bit generator name")
                found.add(f"numpy.random.{name}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _check_hist_gradient_boosting(model: Any, path: Path) -> None:
    """Refuse a histogram gradient boosting model whose trees would make scikit-learn read out of bounds.

    scikit-learn follows the child, feature and bitset indices of each tree node in compiled code without
    bounds checks (skops does not trust ``TreePredictor`` by default for this reason), so a damaged or
    crafted file could crash the process at the first prediction instead of raising an error.
    """
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    if not isinstance(model, BaseHistGradientBoosting) or not hasattr(model, "_predictors"):
        return

    import numpy as np

    def corrupt(what: str) -> ArtifactError:
        return ArtifactError(f"{path}: corrupt histogram gradient boosting model: {what}")

    try:
        is_categorical = np.asarray(model._bin_mapper.is_categorical_).astype(bool)
        n_features = int(model.n_features_in_)
        n_trees = int(model.n_trees_per_iteration_)
        iterations = [list(trees) for trees in model._predictors]
    except (AttributeError, TypeError, ValueError) as e:
        raise corrupt(_one_line(e)) from e
    if is_categorical.shape != (n_features,):
        raise corrupt(f"{is_categorical.size} categorical flags for {n_features} features")
    for trees in iterations:
        if len(trees) != n_trees:
            raise corrupt(f"an iteration with {len(trees)} trees instead of {n_trees}")
        for tree in trees:
            if type(tree) is not TreePredictor:
                raise corrupt(f"a tree of type {type(tree).__name__}")
            nodes = tree.nodes
            if not (
                isinstance(nodes, np.ndarray)
                and nodes.dtype == PREDICTOR_RECORD_DTYPE
                and nodes.ndim == 1
                and nodes.size > 0
            ):
                raise corrupt("a tree without a valid node array")
            n_bitsets = []
            for bitsets in (tree.raw_left_cat_bitsets, tree.binned_left_cat_bitsets):
                if not (
                    isinstance(bitsets, np.ndarray)
                    and bitsets.dtype == X_BITSET_INNER_DTYPE
                    and bitsets.ndim == 2
                    and bitsets.shape[1] == 8
                ):
                    raise corrupt("a tree without valid category bitsets")
                n_bitsets.append(bitsets.shape[0])
            index = np.flatnonzero(nodes["is_leaf"] == 0)
            splits = nodes[index]
            for child in ("left", "right"):
                # nodes are stored depth first: a child always comes after its parent
                if np.any(splits[child] <= index) or np.any(splits[child] >= nodes.size):
                    raise corrupt("a split pointing outside its tree")
            feature = splits["feature_idx"]
            if np.any(feature < 0) or np.any(feature >= n_features):
                raise corrupt("a split on a feature the model does not have")
            categorical = splits[splits["is_categorical"] != 0]
            if not np.all(is_categorical[categorical["feature_idx"]]):
                raise corrupt("a categorical split on a numeric feature")
            if np.any(categorical["bitset_idx"] >= min(n_bitsets)):
                raise corrupt("a categorical split without its category bitset")
