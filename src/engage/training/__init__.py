"""Training: the engagement-score, churn and lifetime-value heads, each with xgboost and a baseline.

``train`` fits every head a contract defines on an in-memory table; ``train_table`` refuses a table that
fails its contract, trains, and writes the model bundles, metrics, KFP metric files and the HTML report.
``load_bundle`` reads a model bundle back after verifying its manifest.
"""

from engage.model import (
    BUNDLE_FORMAT,
    MIN_ROWS,
    PRODUCT_HEADS,
    Head,
    HeadModel,
    ModelBundle,
    TrainConfig,
    bundle_version,
    head_labels,
    load_bundle,
    plan_heads,
)

from ._outputs import evaluation_json, kfp_metrics, write_outputs
from ._table import train_table
from ._train import ChampionComparison, HeadResult, TrainResult, head_metrics, measure, train

__all__ = [
    "BUNDLE_FORMAT",
    "MIN_ROWS",
    "PRODUCT_HEADS",
    "ChampionComparison",
    "Head",
    "HeadModel",
    "HeadResult",
    "ModelBundle",
    "TrainConfig",
    "TrainResult",
    "bundle_version",
    "evaluation_json",
    "head_labels",
    "head_metrics",
    "kfp_metrics",
    "load_bundle",
    "measure",
    "plan_heads",
    "train",
    "train_table",
    "write_outputs",
]
