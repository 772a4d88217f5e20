"""The explainer server: ``python -m engage_serving.explainer`` answers KServe's ``:explain``.

It loads the same bundle as the predictor (SHA-256 verified) and the training reference beside it (its
rows are the explainers' background), and answers ``POST /v1/models/<name>:explain`` with an
:class:`~engage.explain.Explanation` of the request's instances by any of Engage's methods. TreeSHAP
and reason codes answer inline; the sampling methods run in a small bounded pool that answers 429 when
full and 504 past its time budget, so they never queue up behind each other nor starve the fast ones.

Importing this package is cheap: kserve and the ML stack load when the server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._model import FAST_METHODS, SLOW_METHODS, ExplainerModel, explainer_parser, main

__all__ = ["FAST_METHODS", "SLOW_METHODS", "ExplainerModel", "explainer_parser", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _model

        return getattr(_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
