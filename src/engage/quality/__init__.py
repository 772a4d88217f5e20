"""Data-quality gate: schema checks and contract rules on a customer table, with one result schema.

``validate`` judges a table; ``remediate`` repairs and quarantines; ``run_gate`` does both, decides,
and writes the reports, the remediated table, metrics and lineage.
"""

from engage.contract import prohibited_matches

from ._association import association
from ._checks import rows_breaking_rules
from ._gate import GateReport, GateResult, Verdict, run_gate
from ._groundtruth import DefectScore, score_defects
from ._metrics import DATA_QUALITY_JOB, data_quality_registry, push_metrics
from ._remediate import QUARANTINE_REASONS, Action, Remediated, remediate
from ._report import CheckResult, QualityReport
from ._validate import Validation, validate

__all__ = [
    "DATA_QUALITY_JOB",
    "QUARANTINE_REASONS",
    "Action",
    "CheckResult",
    "DefectScore",
    "GateReport",
    "GateResult",
    "QualityReport",
    "Remediated",
    "Validation",
    "Verdict",
    "association",
    "data_quality_registry",
    "prohibited_matches",
    "push_metrics",
    "remediate",
    "rows_breaking_rules",
    "run_gate",
    "score_defects",
    "validate",
]
