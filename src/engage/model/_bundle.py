"""A model bundle: the fitted heads of one learner, their feature set, and a manifest that loading verifies.

Layout of a bundle folder::

    manifest.json          SHA-256 and size of every file below, and the metadata (heads, training, metrics)
    features.json          the FeatureSet: input columns and the levels of each categorical one
    <head>/model.ubj       an xgboost head (UBJSON), or <head>/model.skops for a scikit-learn head
    <head>/calibrator.skops  the isotonic calibrator of a classifier head, when it has one
    <head>/fairness.json   a fairness post-processor (per-cell logit offsets), when the fairness gate chose one

Loading verifies the manifest first (one changed byte anywhere refuses the whole bundle), then reads each
model through :mod:`engage.artifacts`, which never unpickles. The bundle is what the serving predictor
loads, what the registry promotes, and what a champion is.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from engage._io import sha256_file
from engage.artifacts import (
    MANIFEST,
    SKLEARN_SUFFIX,
    XGBOOST_SUFFIX,
    load_sklearn,
    load_xgboost,
    save_sklearn,
    save_xgboost,
    verify_manifest,
    write_manifest,
)
from engage.contract import Distribution, Task
from engage.errors import ArtifactError, SchemaError
from engage.features import FeatureSet, design_matrix

from ._heads import Head
from ._learners import HeadModel

if TYPE_CHECKING:
    from ._offsets import GroupOffsets

__all__ = ["BUNDLE_FORMAT", "ModelBundle", "bundle_version", "load_bundle"]

BUNDLE_FORMAT = "engage-model/1"
FEATURES_FILE = "features.json"
ADJUSTMENT_FILE = "fairness.json"


@dataclass
class ModelBundle:
    """Fitted heads sharing one feature set."""

    features: FeatureSet
    heads: dict[str, HeadModel]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: per head, a fairness post-processor (``group_logit_offsets``) applied to its predictions
    adjustments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``sha256:<hex>`` of the manifest it was loaded from (it names every file's digest, so it names
    #: the exact artifact); None for a bundle not yet saved
    version: str | None = None

    @property
    def learner(self) -> str:
        return next(iter(self.heads.values())).learner if self.heads else "none"

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One prediction column per head (``churn_probability``, ``engagement_score``, ``ltv``), the
        fairness offsets applied: ``frame`` must hold the protected columns they read."""
        X = design_matrix(frame, self.features)
        values, missing = self.adjust({name: model.predict(X) for name, model in self.heads.items()}, frame)
        for name, columns in missing.items():
            raise SchemaError(
                f"protected attribute {columns[0]!r} is not in the table: head {name}'s fairness offsets "
                "cannot be applied"
            )
        return pd.DataFrame({self.heads[n].head.output: v for n, v in values.items()}, index=frame.index)

    @functools.cached_property
    def offsets(self) -> dict[str, GroupOffsets]:
        """Each adjusted head's fairness post-processor (per-cell logit offsets), by head name."""
        from ._offsets import GroupOffsets

        return {name: GroupOffsets.from_json(spec) for name, spec in self.adjustments.items()}

    @property
    def offset_columns(self) -> list[str]:
        """The protected columns the fairness offsets read (empty without offsets)."""
        return sorted({str(a["name"]) for o in self.offsets.values() for a in o.attributes})

    def adjust(
        self, values: Mapping[str, Any], frame: pd.DataFrame
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Each head's predictions (by head name, finished: probabilities, scores) with the head's fairness
        offsets applied from the rows' protected columns in ``frame``: the one place every scorer (this
        bundle's :meth:`predict`, the batch scorer, the predictor) applies them.

        A head whose offsets read a column ``frame`` lacks keeps its predictions; the second value names,
        per such head, the columns it lacks (the caller raises or notes it)."""
        out = dict(values)
        missing: dict[str, list[str]] = {}
        for name, offsets in self.offsets.items():
            if name not in out:
                continue
            lacking = [str(a["name"]) for a in offsets.attributes if str(a["name"]) not in frame.columns]
            if lacking:
                missing[name] = lacking
            else:
                out[name] = offsets.apply_frame(out[name], frame)
        return out, missing

    def save(self, directory: Path, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write the bundle into ``directory`` (new or empty) and its manifest last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise ArtifactError(f"{directory}: not empty: a bundle is written into a new folder")
        (directory / FEATURES_FILE).write_text(self.features.to_json() + "\n", encoding="utf-8")
        heads: dict[str, Any] = {}
        for name, model in self.heads.items():
            folder = directory / name
            folder.mkdir()
            if model.learner == "xgboost":
                save_xgboost(model.estimator, folder / f"model{XGBOOST_SUFFIX}")
            else:
                save_sklearn(model.estimator, folder / f"model{SKLEARN_SUFFIX}")
            if model.calibrator is not None:
                save_sklearn(model.calibrator, folder / f"calibrator{SKLEARN_SUFFIX}")
            if name in self.adjustments:
                text = json.dumps(self.adjustments[name], indent=2, sort_keys=True)
                (folder / ADJUSTMENT_FILE).write_text(text + "\n", encoding="utf-8")
            h = model.head
            heads[name] = {
                "column": h.column,
                "task": h.task.value,
                "distribution": h.distribution.value,
                "positive": h.positive,
                "output": h.output,
                "learner": model.learner,
                "objective": model.objective,
                "transform": model.transform,
                "calibrated": model.calibrator is not None,
                "best_iteration": model.best_iteration,
                "adjustment": self.adjustments[name]["kind"] if name in self.adjustments else None,
            }
        self.metadata = {**(metadata or self.metadata), "format": BUNDLE_FORMAT, "heads": heads}
        write_manifest(directory, metadata=self.metadata)
        self.version = bundle_version(directory)
        return directory


def bundle_version(directory: Path) -> str:
    """The version of the bundle in ``directory``: the SHA-256 of its manifest."""
    return f"sha256:{sha256_file(Path(directory) / MANIFEST)}"


def load_bundle(directory: Path) -> ModelBundle:
    """Verify ``directory`` against its manifest, then load every head; :class:`ArtifactError` otherwise."""
    directory = Path(directory)
    manifest = verify_manifest(directory)
    metadata = manifest.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != BUNDLE_FORMAT:
        raise ArtifactError(f"{directory}: not an Engage model bundle (expected format {BUNDLE_FORMAT})")
    try:
        features = FeatureSet.from_json((directory / FEATURES_FILE).read_text(encoding="utf-8"))
        heads: dict[str, HeadModel] = {}
        adjustments: dict[str, dict[str, Any]] = {}
        for name, spec in metadata["heads"].items():
            head = Head(
                name,
                spec["column"],
                Task(spec["task"]),
                Distribution(spec["distribution"]),
                spec["positive"],
            )
            folder = directory / name
            if spec["learner"] == "xgboost":
                path = folder / f"model{XGBOOST_SUFFIX}"
                estimator: Any = (
                    load_xgboost(path, kind="classifier")
                    if head.classification
                    else load_xgboost(path, kind="regressor")
                )
            else:
                estimator = load_sklearn(folder / f"model{SKLEARN_SUFFIX}")
            calibrator = load_sklearn(folder / f"calibrator{SKLEARN_SUFFIX}") if spec["calibrated"] else None
            if spec.get("adjustment"):
                adjustments[name] = json.loads((folder / ADJUSTMENT_FILE).read_text(encoding="utf-8"))
            heads[name] = HeadModel(
                head,
                spec["learner"],
                estimator,
                spec["objective"],
                spec["transform"],
                calibrator,
                spec["best_iteration"],
            )
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{directory}: bundle metadata is incomplete or malformed: {e}") from None
    return ModelBundle(
        features=features,
        heads=heads,
        metadata=metadata,
        adjustments=adjustments,
        version=bundle_version(directory),
    )
