"""KServe's V1 protocol: ``{"instances": [row, ...]}`` requests and ``{"predictions": [...]}`` answers.

Only the shape of the payload is checked here; the values are the encoder's (:mod:`engage.encoding`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engage.encoding import describe
from engage.errors import RequestRejected

__all__ = ["NO_INSTANCES", "instances", "predictions"]

NO_INSTANCES = "the body has no 'instances' (V1: {\"instances\": [row, ...]})"
EMPTY = "'instances' is empty: send at least one row"
NOT_PREDICTIONS = 'v1 "predictions" must be objects of head outputs ({"churn_probability": ..., ...})'


def bad_request(message: str, reason: str = "malformed_request") -> RequestRejected:
    return RequestRejected(message, status=400, reason=reason)


def instances(payload: Any) -> list[Any]:
    """The rows of a V1 request (``instances``, or ``inputs`` as KServe also reads it), not yet checked."""
    if not isinstance(payload, Mapping):
        raise bad_request(f"the body must be a JSON object with 'instances', not {type(payload).__name__}")
    rows = payload.get("instances", payload.get("inputs"))
    if rows is None:
        raise bad_request(NO_INSTANCES, "no_instances")
    if not isinstance(rows, list):
        raise bad_request(f"'instances' must be a list of rows, not {type(rows).__name__}", "no_instances")
    if not rows:
        raise bad_request(EMPTY, "no_instances")
    return rows


def predictions(payload: Mapping[str, Any], heads: Sequence[str]) -> dict[str, list[Any]]:
    """Each head's values in a V1 answer (``predictions``: one object of outputs a row)."""
    rows = payload.get("predictions")
    if not isinstance(rows, list):
        raise bad_request("'predictions' must be a list of objects of head outputs")
    bad: list[dict[str, object]] = [
        {"row": i, "field": None, "error": f"not an object: {describe(p)}"}
        for i, p in enumerate(rows)
        if not isinstance(p, Mapping)
    ]
    if bad:
        raise RequestRejected(NOT_PREDICTIONS, status=422, reason="wrong_type", details=bad[:20])
    return {h: [p.get(h) for p in rows] for h in heads if any(h in p for p in rows)}
