"""The fairness gate: per-group figures with bootstrap intervals, mitigation candidates, trade-off, verdict.

``assess`` measures every head of a model bundle on the test rows of a table, trains and scores the
mitigation candidates, chooses the most accurate one that meets the policy and can ship, and decides
``pass`` / ``pass_after_mitigation`` / ``fail`` (``not_applicable`` when the contract states fairness does
not apply, with its reason). ``write_fairness`` writes the JSON, HTML and Markdown
reports and the model to promote.
"""

from engage.model._groups import UNKNOWN, attribute_specs, cell_labels, protected_groups

from ._gate import (
    NOT_APPLICABLE,
    CandidateResult,
    FairnessResult,
    HeadFairness,
    assess,
    assess_training,
    split_for,
)
from ._metrics import AttributeFairness, Figure, GroupRow, classification_fairness, regression_fairness
from ._mitigate import Candidate, GroupOffsets
from ._outputs import fairness_json, summary_markdown, write_fairness

__all__ = [
    "NOT_APPLICABLE",
    "UNKNOWN",
    "AttributeFairness",
    "Candidate",
    "CandidateResult",
    "FairnessResult",
    "Figure",
    "GroupOffsets",
    "GroupRow",
    "HeadFairness",
    "assess",
    "assess_training",
    "attribute_specs",
    "cell_labels",
    "classification_fairness",
    "fairness_json",
    "protected_groups",
    "regression_fairness",
    "split_for",
    "summary_markdown",
    "write_fairness",
]
