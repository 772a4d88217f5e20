"""What a server loads: the model bundle, its heads and fitted models, and the fairness post-processor.

Kept free of the training, evaluation and fairness stacks (no fairlearn, matplotlib or great_expectations)
so that the predictor image can load a bundle; ``engage.training`` re-exports these names.
"""

from ._bundle import BUNDLE_FORMAT, ModelBundle, bundle_version, load_bundle
from ._heads import MIN_ROWS, PRODUCT_HEADS, Head, check_counts, head_labels, plan_heads
from ._learners import HeadModel, TrainConfig
from ._offsets import GroupOffsets

__all__ = [
    "BUNDLE_FORMAT",
    "MIN_ROWS",
    "PRODUCT_HEADS",
    "GroupOffsets",
    "Head",
    "HeadModel",
    "ModelBundle",
    "TrainConfig",
    "bundle_version",
    "check_counts",
    "head_labels",
    "load_bundle",
    "plan_heads",
]
