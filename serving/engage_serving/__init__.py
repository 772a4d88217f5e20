"""Engage's KServe servers: the predictor, the explainer and the drift detector.

Each is a ``kserve.Model`` subclass with a ``python -m engage_serving.<server>`` entrypoint whose flags
extend ``kserve.model_server.parser``. This package imports neither kserve nor the ML stack: the servers
import them when they start.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._settings import ServingSettings

__all__ = ["ServingSettings"]


def __getattr__(name: str) -> Any:
    # lazily: the engage CLI imports this package's cli module at start-up, which must stay light
    if name == "ServingSettings":
        from ._settings import ServingSettings

        return ServingSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
