"""Model evaluation: metrics over test labels and predictions, and the HTML evaluation report.

The metric functions are pure functions over numpy arrays and raise
:class:`~engage.errors.SchemaError` with one line naming the problem when their input is unusable
(different lengths, no rows, NaN, probabilities outside [0, 1], a single class where both are needed).
"""

from ._metrics import (
    calibration_curve,
    classification_metrics,
    confusion,
    expected_calibration_error,
    lift_table,
    regression_metrics,
    roc_points,
    value_metrics,
)
from ._report import HeadEvaluation, render_html_report

__all__ = [
    "HeadEvaluation",
    "calibration_curve",
    "classification_metrics",
    "confusion",
    "expected_calibration_error",
    "lift_table",
    "regression_metrics",
    "render_html_report",
    "roc_points",
    "value_metrics",
]
