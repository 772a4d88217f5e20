"""Drift detection: recent traffic (or given rows) against the training reference.

* :class:`Reference`: the pipeline's drift reference (``reference.parquet`` + ``summary.json``) and its
  encoder (:class:`engage.encoding.Encoder`, lenient) of rows (objects, column lists or DataFrames) to
  its float matrix; bad rows are refused with :class:`~engage.errors.RequestRejected` naming row and field.
* :class:`DriftDetector`: a thread-safe sliding window, the test cadence, and one result schema
  (``{"data", "meta"}``) for data drift per feature (KS / chi-square, Bonferroni or FDR), prediction drift
  per head and an isolation-forest outlier score, from either backend: ``alibi-detect`` (BSL 1.1) or
  ``scipy`` (licence-clean).
* :class:`DriftSettings`: ``ENGAGE_DRIFT_*``.

scipy, scikit-learn and alibi-detect are imported when a detector is built, not with this package.
"""

from ._detector import BACKEND_NAMES, DriftDetector, decide
from ._reference import REFERENCE_FILE, REFUSED, SUMMARY_FILE, Reference
from ._settings import DriftSettings

__all__ = [
    "BACKEND_NAMES",
    "REFERENCE_FILE",
    "REFUSED",
    "SUMMARY_FILE",
    "DriftDetector",
    "DriftSettings",
    "Reference",
    "decide",
]
