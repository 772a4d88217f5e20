"""Data-quality gate: schema checks and contract rules on a customer table, with one result schema."""

from ._association import association
from ._checks import prohibited_matches
from ._groundtruth import DefectScore, score_defects
from ._report import CheckResult, QualityReport
from ._validate import Validation, validate

__all__ = [
    "CheckResult",
    "DefectScore",
    "QualityReport",
    "Validation",
    "association",
    "prohibited_matches",
    "score_defects",
    "validate",
]
