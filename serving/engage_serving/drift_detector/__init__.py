"""The drift detector server: ``python -m engage_serving.drift_detector``.

It takes the events KServe's InferenceService logger posts for the predictor (CloudEvents of every
request and response), keeps a sliding window of the latest rows and predictions, and tests it against
the training reference in a background thread (:class:`~engage.drift.DriftDetector`): per-feature drift,
prediction drift per head and an outlier score, published as ``engage_drift_*`` gauges on ``/metrics``.
``POST /v1/models/<name>:predict`` tests given rows at once; ``GET /v1/models/<name>/drift`` returns the
latest result.

Importing this package is cheap: kserve and the ML stack load when the server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model import (
        REQUEST_EVENT,
        RESPONSE_EVENT,
        DriftDetectorModel,
        drift_parser,
        main,
        parse_event,
        request_matrix,
    )

__all__ = [
    "REQUEST_EVENT",
    "RESPONSE_EVENT",
    "DriftDetectorModel",
    "drift_parser",
    "main",
    "parse_event",
    "request_matrix",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _model

        return getattr(_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
