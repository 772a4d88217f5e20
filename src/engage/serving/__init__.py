"""Engage's KServe servers: the predictor, the explainer and the drift detector.

Each is a ``kserve.Model`` subclass with a ``python -m engage.serving.<server>`` entrypoint whose flags
extend ``kserve.model_server.parser``. This package imports neither kserve nor the ML stack: the servers
import them when they start.
"""

from ._settings import ServingSettings

__all__ = ["ServingSettings"]
