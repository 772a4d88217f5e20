"""The V2 / Open Inference Protocol's JSON: ``{"inputs": [tensor, ...]}`` requests, ``{"outputs": ...}``
answers.

A request is checked as KServe's own ``InferenceRequest`` model checks it (``id`` a string, ``parameters``
an object, ``inputs`` a non-empty list of tensors each with a string ``name``, a ``shape`` of sizes, a
string ``datatype``, a ``data`` list; ``outputs`` a list of ``{"name"}``), with one more check it leaves
to the model: a tensor's ``data`` holds exactly ``prod(shape)`` values. So the fast route and KServe's
FastAPI route refuse the same bodies with the same answer (``install_error_handlers`` maps KServe's
validation errors here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engage.encoding import Problems, describe
from engage.errors import RequestRejected

from .v1 import bad_request

__all__ = ["NO_INPUTS", "NUMERIC", "Tensor", "check_request", "outputs", "tensors"]

NO_INPUTS = "'inputs' must be a non-empty list of tensors"
NUMERIC = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)


@dataclass(frozen=True)
class Tensor:
    """A checked tensor; ``data`` flat, in row-major order."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]

    @property
    def numeric(self) -> bool:
        return self.datatype in NUMERIC


def check_request(payload: Any) -> dict[str, Tensor]:
    """The input tensors of a V2 request, by name; :class:`RequestRejected` naming every problem."""
    if not isinstance(payload, Mapping):
        raise bad_request(f"the body must be a JSON object with 'inputs', not {type(payload).__name__}")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request(NO_INPUTS, "no_inputs")
    problems = Problems()
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problems.add(None, "id", "malformed_request", f"'id' must be a string, got {describe(request_id)}")
    _parameters(payload, "parameters", problems)
    requested = payload.get("outputs")
    if requested is not None:
        if not isinstance(requested, list):
            problems.add(
                None, "outputs", "malformed_request", f"'outputs' must be a list, got {describe(requested)}"
            )
        else:
            for k, output in enumerate(requested):
                if not isinstance(output, Mapping) or not isinstance(output.get("name"), str):
                    problems.add(
                        None, f"outputs[{k}]", "malformed_request", "a requested output needs a 'name'"
                    )
                else:
                    _parameters(output, f"outputs[{k}].parameters", problems)
    found = tensors(inputs, "inputs", problems)
    problems.raise_if_any()
    return found


def tensors(items: list[Any], key: str, problems: Problems) -> dict[str, Tensor]:
    """The tensors of ``items`` (a request's ``inputs`` or an answer's ``outputs``) by name."""
    found: dict[str, Tensor] = {}
    for k, tensor in enumerate(items):
        if not isinstance(tensor, Mapping):
            problems.add(
                None, f"{key}[{k}]", "malformed_tensor", f"a tensor must be an object, not {describe(tensor)}"
            )
            continue
        name, shape, datatype, data = (tensor.get(f) for f in ("name", "shape", "datatype", "data"))
        label = name if isinstance(name, str) and name else f"{key}[{k}]"
        if not isinstance(name, str) or not name:
            problems.add(None, label, "malformed_tensor", "a tensor needs a 'name'")
        elif not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            problems.add(None, label, "malformed_tensor", f"'shape' must be a list of sizes, got {shape!r}")
        elif not isinstance(datatype, str):
            problems.add(
                None, label, "malformed_tensor", "a tensor needs a 'datatype' (FP32, INT64, BYTES, BOOL…)"
            )
        elif not isinstance(data, list):
            problems.add(None, label, "malformed_tensor", f"'data' must be a list, not {describe(data)}")
        elif tensor.get("parameters") is not None and not isinstance(tensor.get("parameters"), Mapping):
            problems.add(None, label, "malformed_tensor", "'parameters' must be an object")
        else:
            flat = _flatten(data)
            if math.prod(shape) != len(flat):
                problems.add(
                    None, label, "shape_mismatch",
                    f"shape {shape} holds {math.prod(shape)} values but 'data' has {len(flat)}",
                )  # fmt: skip
                continue
            found[name] = Tensor(name, shape, datatype, flat)
    return found


def outputs(payload: Mapping[str, Any], heads: Sequence[str]) -> dict[str, list[Any]]:
    """Each head's values in a V2 answer (``outputs``: one tensor a head); other outputs are ignored."""
    items = payload.get("outputs")
    if not isinstance(items, list):
        raise bad_request("'outputs' must be a list of tensors")
    problems = Problems()
    found = tensors(items, "outputs", problems)
    problems.raise_if_any()
    return {name: t.data for name, t in found.items() if name in heads}


def _parameters(holder: Mapping[str, Any], label: str, problems: Problems) -> None:
    value = holder.get("parameters")
    if value is not None and not isinstance(value, Mapping):
        problems.add(
            None, label, "malformed_request", f"'parameters' must be an object, got {describe(value)}"
        )


def _flatten(data: list[Any]) -> list[Any]:
    """A tensor's data in row-major order, whether sent flat or nested."""
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def refusal_of(payload: Any) -> RequestRejected | None:
    """What :func:`check_request` says of ``payload``, or None when it finds nothing wrong."""
    try:
        check_request(payload)
    except RequestRejected as e:
        return e
    return None
