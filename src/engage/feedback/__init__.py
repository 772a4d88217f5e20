"""The production feedback loop: the predictor's logged traffic, joined with outcomes as they arrive.

* :class:`EventStore` (used by the drift detector's ``--event_store``) writes every scored row to
  Parquet; :func:`read_events` reads them back.
* :func:`live_report` joins them with an outcomes table and judges live accuracy, live fairness,
  prediction drift and business figures by the promotion policy; :func:`report_window` reads a window of
  the store and the outcomes table and does it (``engage feedback``, the ``engage-feedback`` pipeline).
* :func:`estimate_classification` estimates the churn head's AUC, accuracy, precision, recall and F1 from
  its calibrated probabilities before labels come (CBPE, docs/cbpe.md); the live report shows it beside
  the realised figures once they do.
* :func:`push_live_metrics` pushes the figures (``engage_live_*``) to a Prometheus Pushgateway.

See ``docs/feedback.md``.
"""

from ._cbpe import (
    CBPE_METRICS,
    REGRESSION_HEADS_NOTE,
    CBPEEstimate,
    ReferenceCalibration,
    estimate_classification,
    fit_reference_calibration,
    realised_classification,
)
from ._metrics import (
    FEEDBACK_JOB,
    LIVE_METRICS,
    STORE_FAILURES,
    live_registry,
    push_live_metrics,
    store_failures,
)
from ._report import (
    MIN_LABELLED,
    OUTCOME_TIME,
    PSI_THRESHOLD,
    LiveHead,
    LiveReport,
    LiveRule,
    PredictionDrift,
    live_report,
    psi,
    write_report,
)
from ._store import BASE_COLUMNS, PREDICTION_PREFIX, EventStore, pair_rows, read_events
from ._window import report_window

__all__ = [
    "BASE_COLUMNS",
    "CBPE_METRICS",
    "FEEDBACK_JOB",
    "LIVE_METRICS",
    "MIN_LABELLED",
    "OUTCOME_TIME",
    "PREDICTION_PREFIX",
    "PSI_THRESHOLD",
    "REGRESSION_HEADS_NOTE",
    "STORE_FAILURES",
    "CBPEEstimate",
    "EventStore",
    "LiveHead",
    "LiveReport",
    "LiveRule",
    "PredictionDrift",
    "ReferenceCalibration",
    "estimate_classification",
    "fit_reference_calibration",
    "live_registry",
    "live_report",
    "pair_rows",
    "psi",
    "push_live_metrics",
    "read_events",
    "realised_classification",
    "report_window",
    "store_failures",
    "write_report",
]
