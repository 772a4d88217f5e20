"""XGBoost models as UBJSON (``.ubj``), saved with xgboost's own ``save_model``: trees and parameters only.

A truncated or malformed file is refused by a structural UBJSON check before xgboost's reader (which can
crash the process on one) sees it. xgboost is imported inside the functions that need it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from engage._io import atomic_path
from engage.artifacts._common import _one_line, _read_artifact, _require_suffix
from engage.errors import ArtifactError

if TYPE_CHECKING:
    import xgboost

XGBOOST_SUFFIX = ".ubj"


def save_xgboost(model: xgboost.Booster | xgboost.XGBModel, path: Path) -> Path:
    """Save an XGBoost ``Booster`` or scikit-learn-API model to ``path`` (``.ubj``), atomically."""
    import xgboost

    path = Path(path)
    _require_suffix(path, XGBOOST_SUFFIX)
    if not isinstance(model, xgboost.Booster | xgboost.XGBModel):
        raise TypeError(f"save_xgboost takes an xgboost Booster or XGBModel, not {type(model).__name__}")
    with atomic_path(path) as tmp:
        # xgboost picks the format from the file name, so the staged file must end in .ubj too
        staged = tmp.with_name(tmp.name + XGBOOST_SUFFIX)
        try:
            model.save_model(staged)
            os.replace(staged, tmp)
        finally:
            staged.unlink(missing_ok=True)
    return path


@overload
def load_xgboost(path: Path, *, kind: Literal["booster"] = ...) -> xgboost.Booster: ...
@overload
def load_xgboost(path: Path, *, kind: Literal["regressor"]) -> xgboost.XGBRegressor: ...
@overload
def load_xgboost(path: Path, *, kind: Literal["classifier"]) -> xgboost.XGBClassifier: ...
def load_xgboost(
    path: Path, *, kind: Literal["booster", "regressor", "classifier"] = "booster"
) -> xgboost.Booster | xgboost.XGBModel:
    """Load a model saved by :func:`save_xgboost`, as a ``Booster`` or as the scikit-learn wrapper.

    xgboost's reader can crash the whole process (not raise) on a damaged file. A truncated file, or
    anything that is not one complete UBJSON document, is refused here before xgboost sees it; a
    well-formed file with damaged tree indices is not, so check the model directory with
    :func:`verify_manifest` before loading from it.
    """
    import xgboost

    path = Path(path)
    model: xgboost.Booster | xgboost.XGBModel
    if kind == "booster":
        model = xgboost.Booster()
    elif kind == "regressor":
        model = xgboost.XGBRegressor()
    elif kind == "classifier":
        model = xgboost.XGBClassifier()
    else:
        raise ValueError(f"kind must be 'booster', 'regressor' or 'classifier', not {kind!r}")
    data = _read_artifact(path)
    try:
        # xgboost's own reader can crash the process on a truncated file, so check the structure first
        _check_ubjson(data)
        model.load_model(bytearray(data))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable XGBoost {kind} model: {_one_line(e)}") from e
    return model


_UBJ_SIZES = {ord(m): size for m, size in {"Z": 0, "N": 0, "T": 0, "F": 0, "C": 1, "d": 4, "D": 8}.items()}
_UBJ_INTEGERS = {ord(m): size for m, size in {"i": 1, "U": 1, "I": 2, "l": 4, "L": 8}.items()}
_UBJ_SIZES.update(_UBJ_INTEGERS)
_UBJ_MAX_DEPTH = 64


def _check_ubjson(data: bytes) -> None:
    """Raise ``ValueError`` unless ``data`` is exactly one complete, well-formed UBJSON object.

    Walks the structure only (markers, lengths, counts, nesting); fixed-size typed arrays (how xgboost
    stores trees) are skipped in one step, so this costs little next to xgboost's own parse.
    """
    end = len(data)
    pos = 0

    def take(size: int) -> bytes:
        nonlocal pos
        if size > end - pos:
            raise ValueError(f"truncated: {size} bytes needed at byte {pos} of {end}")
        chunk = data[pos : pos + size]
        pos += size
        return chunk

    def count() -> int:
        marker = take(1)[0]
        size = _UBJ_INTEGERS.get(marker)
        if size is None:
            raise ValueError(f"a length of unknown type {chr(marker)!r} at byte {pos - 1}")
        value = int.from_bytes(take(size), "big", signed=marker != ord("U"))
        if not 0 <= value <= end - pos:
            raise ValueError(f"a length of {value} at byte {pos - size} runs past the end of the file")
        return value

    # one frame per open container: [is object, elements left (-1: until the end marker), element type]
    stack: list[list[int]] = []

    def value(marker: int) -> None:
        if marker in _UBJ_SIZES:
            take(_UBJ_SIZES[marker])
        elif marker in (ord("S"), ord("H")):
            take(count())
        elif marker in (ord("["), ord("{")):
            if len(stack) >= _UBJ_MAX_DEPTH:
                raise ValueError(f"nested deeper than {_UBJ_MAX_DEPTH} levels")
            element = 0
            if data[pos : pos + 1] == b"$":
                take(1)
                element = take(1)[0]
                if element not in _UBJ_SIZES and element not in (ord("S"), ord("H")):
                    raise ValueError(f"a container of unknown type {chr(element)!r} at byte {pos - 1}")
                if take(1) != b"#":
                    raise ValueError(f"a typed container without a count at byte {pos - 1}")
            n = -1
            if element or data[pos : pos + 1] == b"#":
                if not element:
                    take(1)
                n = count()
            if marker == ord("[") and element in _UBJ_SIZES:
                take(n * _UBJ_SIZES[element])  # a typed array of fixed-size values
            else:
                stack.append([marker == ord("{"), n, element])
        else:
            raise ValueError(f"unknown marker {chr(marker)!r} at byte {pos - 1}")

    if data[:1] != b"{":
        raise ValueError("not a UBJSON object")
    value(take(1)[0])
    while stack:
        frame = stack[-1]
        is_object, left, element = frame
        if left < 0:
            closing = b"}" if is_object else b"]"
            if take(1) == closing:
                stack.pop()
                continue
            pos -= 1
        elif left == 0:
            stack.pop()
            continue
        else:
            frame[1] -= 1
        if is_object:
            take(count())  # the key
        value(element or take(1)[0])
    if pos != end:
        raise ValueError(f"{end - pos} bytes after the end of the model")
