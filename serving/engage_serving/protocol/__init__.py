"""One decoder of KServe's V1 and V2 payloads, shared by the predictor and the drift detector.

:mod:`.v1` and :mod:`.v2` check each protocol's shape; :class:`Decoder` hands the values to the one
encoder (:class:`engage.encoding.Encoder`), strict for the predictor (the contract's types, bounds and
levels), lenient for the drift detector (numeric text, unseen levels as missing). Columns of the
contract that are not model inputs (the customer id, protected attributes) may ride along: they come
back in :attr:`Batch.extras`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engage.encoding import Problems, unknown_field
from engage.errors import RequestRejected

from . import v1, v2
from .v1 import bad_request
from .v2 import Tensor

if TYPE_CHECKING:
    from engage.contract import Contract
    from engage.encoding import Encoder

__all__ = ["EXPECTED_ROWS", "MISSING_TENSOR", "Batch", "Decoder", "not_served", "predictions", "v1", "v2"]

MISSING_TENSOR = "missing: send one tensor per model feature"
EXPECTED_ROWS = (
    'expected {"instances": [{feature: value, ...}, ...]} (v1), {"inputs": [tensors]} (v2) or a list of rows'
)


@dataclass
class Batch:
    """Checked rows: the model input matrix, and the contract columns that rode along."""

    X: npt.NDArray[Any]
    extras: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


class Decoder:
    """V1 / V2 payloads -> :class:`Batch` through ``encoder``, at most ``max_rows`` rows a request."""

    def __init__(
        self, encoder: Encoder, contract: Contract | None, *, max_rows: int, dtype: Any = np.float32
    ) -> None:
        self.encoder = encoder
        self.names = encoder.names
        self.max_rows = max_rows
        self.dtype = dtype
        inputs = set(self.names)
        columns = contract.columns if contract is not None else {}
        self.carried = [
            n for n, c in columns.items() if n not in inputs and c.role.value in ("id", "protected")
        ]
        self.id_column = next((n for n, c in columns.items() if c.role.value == "id"), None)

    # ------------------------------------------------------------------------------------------ V1
    def v1(self, payload: Any) -> Batch:
        return self._rows(v1.instances(payload))

    def _rows(self, rows: list[Any]) -> Batch:
        self.check_count(len(rows))
        X = self.encoder.rows(rows)
        extras = {
            name: [r.get(name) if isinstance(r, Mapping) else None for r in rows] for name in self.carried
        }
        return Batch(X.astype(self.dtype, copy=False), _present(extras))

    # ------------------------------------------------------------------------------------------ V2
    def v2(self, payload: Any) -> Batch:
        tensors = v2.check_request(payload)
        if len(tensors) == 1:
            ((name, tensor),) = tensors.items()
            shape = tensor.shape
            if len(shape) == 2 and shape[1] == len(self.names) and name not in self.encoder.allowed:
                return self._matrix(tensor)
        return self._columns(tensors)

    def _matrix(self, tensor: Tensor) -> Batch:
        rows = tensor.shape[0]
        self.check_count(rows)
        if not tensor.numeric:
            raise RequestRejected(
                f"a [rows, features] tensor must be numeric (FP32, FP64, INT…), not {tensor.datatype}: categories as "
                "level codes; or send one tensor per feature", status=422, reason="wrong_type",
            )  # fmt: skip
        return Batch(self.encoder.codes(rows, tensor.data).astype(self.dtype, copy=False))

    def _columns(self, tensors: Mapping[str, Tensor]) -> Batch:
        problems = self.encoder.problems()
        if self.encoder.strict:
            for name in tensors:
                if name not in self.encoder.allowed:
                    problems.add(None, name, "unknown_field", unknown_field(name, self.names))
        for name in self.names:
            if name not in tensors:
                problems.add(None, name, "missing_feature", MISSING_TENSOR)
        problems.raise_if_any()
        rows = len(tensors[self.names[0]].data)
        for name, t in tensors.items():
            if len(t.data) != rows or (len(t.shape) == 2 and t.shape[1] != 1) or len(t.shape) > 2:
                problems.add(
                    None,
                    name,
                    "shape_mismatch",
                    f"shape {t.shape}: every tensor must be [{rows}] or [{rows}, 1]",
                )
        problems.raise_if_any()
        self.check_count(rows)
        coded = {f.name for f in self.encoder.fields if f.levels and tensors[f.name].numeric}
        X = self.encoder.columns({name: tensors[name].data for name in self.names}, coded=coded)
        extras = {name: list(tensors[name].data) for name in self.carried if name in tensors}
        return Batch(X.astype(self.dtype, copy=False), extras)

    # ------------------------------------------------------------------------------------------ any
    def any(self, payload: Any) -> Batch:
        """The rows of a V1 or V2 request, or a plain JSON list of row objects (what a logger posts)."""
        if isinstance(payload, list):
            return self._rows(payload)
        if isinstance(payload, Mapping) and "instances" in payload:
            return self.v1(payload)
        if isinstance(payload, Mapping) and "inputs" in payload:
            return self.v2(payload)
        raise bad_request(EXPECTED_ROWS)

    def check_count(self, rows: int) -> None:
        if rows > self.max_rows:
            raise RequestRejected(
                f"{rows} rows in one request, over this server's limit of {self.max_rows} "
                "(ENGAGE_SERVING_MAX_ROWS): split the batch",
                status=413,
                reason="too_many_rows",
            )


def predictions(payload: Any, heads: Sequence[str]) -> dict[str, list[float]]:
    """The predicted values per head of a predictor answer (V1 ``predictions`` objects, V2 ``outputs``);
    outputs of other names are ignored; a value that is not a number is refused (422)."""
    if isinstance(payload, Mapping) and "outputs" in payload:
        out = v2.outputs(payload, heads)
    elif isinstance(payload, Mapping) and "predictions" in payload:
        out = v1.predictions(payload, heads)
    else:
        raise bad_request(
            'expected a predictor answer: {"predictions": [...]} (v1) or {"outputs": [tensors]} (v2)'
        )
    problems = Problems("predictions are not numbers")
    for head, values in out.items():
        for i, v in enumerate(values):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                problems.add(i, head, "wrong_type", "prediction is not a number")
    problems.raise_if_any()
    return {h: [math.nan if v is None else float(v) for v in values] for h, values in out.items()}


def not_served(verb: str, server: str, where: str) -> RequestRejected:
    """The refusal of a KServe verb this server does not answer (the predictor's and the drift detector's
    ``:explain``, the explainer's ``:predict`` and ``/infer``): KServe's base model would answer 501, a
    5xx for a request sent to the wrong server. 404, saying which server answers it."""
    return RequestRejected(f"the {server} does not answer {verb}: {where}", status=404, reason="not_served")


def _present(extras: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return extras if any(any(v is not None for v in vs) for vs in extras.values()) else {}
