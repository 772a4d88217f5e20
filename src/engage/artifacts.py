"""Safe model artifacts: XGBoost models as UBJSON, scikit-learn models as skops files, and a manifest.

No artifact is ever stored in a format that can run code when it is read (Python object
serialization); loading a model only rebuilds data:

* XGBoost models (a ``Booster`` or the scikit-learn wrappers) are saved with xgboost's own
  ``save_model`` as UBJSON (``.ubj``), which holds trees and parameters only.
* scikit-learn estimators are saved with :mod:`skops.io` (``.skops``). Loading refuses, before anything
  is built, a file that holds any type outside an explicit allow-list, :data:`TRUSTED_SKLEARN_TYPES`
  by default. The check is stricter than skops' own: skops trusts every scikit-learn estimator, every
  numpy ufunc and a few containers by default, this module trusts only what is listed.
* :func:`write_manifest` records the SHA-256 and size of every file of a model directory;
  :func:`verify_manifest` refuses a directory where a file was changed, removed or added since.

Every problem is an :class:`~engage.errors.ArtifactError` whose one-line message names the file;
a corrupt file never surfaces as a raw xgboost or skops exception. Call :func:`verify_manifest` before
loading: a changed byte inside an otherwise well-formed XGBoost file can crash xgboost itself. xgboost, scikit-learn and skops are
imported inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, overload

from engage._io import atomic_path, sha256_file, write_text_atomic
from engage.errors import ArtifactError

if TYPE_CHECKING:
    import xgboost

__all__ = [
    "MANIFEST",
    "TRUSTED_SKLEARN_TYPES",
    "load_sklearn",
    "load_xgboost",
    "save_sklearn",
    "save_xgboost",
    "verify_manifest",
    "write_manifest",
]

#: File name of the manifest at the top of a model directory.
MANIFEST = "manifest.json"
#: Version of the manifest layout written by :func:`write_manifest`.
MANIFEST_VERSION = 1
XGBOOST_SUFFIX = ".ubj"
SKLEARN_SUFFIX = ".skops"

#: Every type a skops file may hold for :func:`load_sklearn` to load it: exactly what fitted
#: ``HistGradientBoostingRegressor`` (squared error) and ``HistGradientBoostingClassifier`` (binary log
#: loss), including pandas-categorical inputs with ``categorical_features="from_dtype"``,
#: ``IsotonicRegression`` and ``LogisticRegression`` need, as found with ``skops.io.get_untrusted_types``
#: and the file's schema on real fitted models.
TRUSTED_SKLEARN_TYPES: tuple[str, ...] = (
    # containers and values of the saved state
    "builtins.dict",
    "builtins.int",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "numpy.uint64",
    # the feature-subsampling generator of histogram gradient boosting
    "numpy.random._generator.Generator",
    "numpy.random.PCG64",
    # the estimators
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",
    # histogram gradient boosting internals: binning, trees, losses and their links
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.preprocessing._label.LabelEncoder",
    # the preprocessor behind categorical_features="from_dtype"
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "functools.partial",
    "sklearn.utils.validation.check_array",
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


# --- XGBoost -------------------------------------------------------------------------------------------


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


# --- scikit-learn --------------------------------------------------------------------------------------


def save_sklearn(estimator: object, path: Path) -> Path:
    """Save a scikit-learn estimator to ``path`` (``.skops``) with :func:`skops.io.dumps`, atomically."""
    import skops.io  # type: ignore[import-untyped]

    path = Path(path)
    _require_suffix(path, SKLEARN_SUFFIX)
    data: bytes = skops.io.dumps(estimator)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def load_sklearn(path: Path, *, trusted: Sequence[str] = TRUSTED_SKLEARN_TYPES) -> Any:
    """Load a skops file, refusing it unless every type it holds is in ``trusted``.

    The types are read from the file's schema (every type it names) and from
    :func:`skops.io.get_untrusted_types` (what skops itself would refuse) before any object is built.
    A loaded histogram gradient boosting model also has its trees checked, because scikit-learn walks
    them without bounds checks.
    """
    import skops.io

    if isinstance(trusted, str):
        raise TypeError("trusted must be a sequence of type names, not one string")
    path = Path(path)
    data = _read_artifact(path)
    try:
        held = _skops_types(data) | set(skops.io.get_untrusted_types(data=data))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable skops file: {_one_line(e)}") from e
    refused = sorted(held - set(trusted))
    if refused:
        raise ArtifactError(f"{path}: untrusted types refused: {', '.join(refused)}")
    try:
        estimator = skops.io.loads(data, trusted=list(trusted))
    except Exception as e:
        raise ArtifactError(f"{path}: not a readable skops file: {_one_line(e)}") from e
    _check_hist_gradient_boosting(estimator, path)
    return estimator


def _skops_types(data: bytes) -> set[str]:
    """Every type a skops file names: each ``__module__.__class__`` of its schema, and bit generators."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__module__" in node or "__class__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
            if node.get("__loader__") == "RandomGeneratorNode":
                # numpy names the bit generator class in a plain string of the state (skops resolves it
                # with getattr(numpy.random, name)), so it is a type too
                try:
                    name = json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
                except (KeyError, TypeError, ValueError):
                    name = None
                if not isinstance(name, str):
                    raise ValueError("a numpy random generator without a bit generator name")
                found.add(f"numpy.random.{name}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _check_hist_gradient_boosting(model: Any, path: Path) -> None:
    """Refuse a histogram gradient boosting model whose trees would make scikit-learn read out of bounds.

    scikit-learn follows the child, feature and bitset indices of each tree node in compiled code without
    bounds checks (skops does not trust ``TreePredictor`` by default for this reason), so a damaged or
    crafted file could crash the process at the first prediction instead of raising an error.
    """
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )
    from sklearn.ensemble._hist_gradient_boosting.gradient_boosting import BaseHistGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    if not isinstance(model, BaseHistGradientBoosting) or not hasattr(model, "_predictors"):
        return

    import numpy as np

    def corrupt(what: str) -> ArtifactError:
        return ArtifactError(f"{path}: corrupt histogram gradient boosting model: {what}")

    try:
        is_categorical = np.asarray(model._bin_mapper.is_categorical_).astype(bool)
        n_features = int(model.n_features_in_)
        n_trees = int(model.n_trees_per_iteration_)
        iterations = [list(trees) for trees in model._predictors]
    except (AttributeError, TypeError, ValueError) as e:
        raise corrupt(_one_line(e)) from e
    if is_categorical.shape != (n_features,):
        raise corrupt(f"{is_categorical.size} categorical flags for {n_features} features")
    for trees in iterations:
        if len(trees) != n_trees:
            raise corrupt(f"an iteration with {len(trees)} trees instead of {n_trees}")
        for tree in trees:
            if type(tree) is not TreePredictor:
                raise corrupt(f"a tree of type {type(tree).__name__}")
            nodes = tree.nodes
            if not (
                isinstance(nodes, np.ndarray)
                and nodes.dtype == PREDICTOR_RECORD_DTYPE
                and nodes.ndim == 1
                and nodes.size > 0
            ):
                raise corrupt("a tree without a valid node array")
            n_bitsets = []
            for bitsets in (tree.raw_left_cat_bitsets, tree.binned_left_cat_bitsets):
                if not (
                    isinstance(bitsets, np.ndarray)
                    and bitsets.dtype == X_BITSET_INNER_DTYPE
                    and bitsets.ndim == 2
                    and bitsets.shape[1] == 8
                ):
                    raise corrupt("a tree without valid category bitsets")
                n_bitsets.append(bitsets.shape[0])
            index = np.flatnonzero(nodes["is_leaf"] == 0)
            splits = nodes[index]
            for child in ("left", "right"):
                # nodes are stored depth first: a child always comes after its parent
                if np.any(splits[child] <= index) or np.any(splits[child] >= nodes.size):
                    raise corrupt("a split pointing outside its tree")
            feature = splits["feature_idx"]
            if np.any(feature < 0) or np.any(feature >= n_features):
                raise corrupt("a split on a feature the model does not have")
            categorical = splits[splits["is_categorical"] != 0]
            if not np.all(is_categorical[categorical["feature_idx"]]):
                raise corrupt("a categorical split on a numeric feature")
            if np.any(categorical["bitset_idx"] >= min(n_bitsets)):
                raise corrupt("a categorical split without its category bitset")


# --- manifest ------------------------------------------------------------------------------------------


def write_manifest(directory: Path, *, metadata: dict[str, object] | None = None) -> Path:
    """Write ``directory/manifest.json``: SHA-256 and size of every file below it, and ``metadata``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: missing: not a directory")
    files = [
        {"path": rel, "sha256": sha256_file(file), "size": file.stat().st_size}
        for rel, file in _list_files(directory).items()
    ]
    manifest = {"manifest_version": MANIFEST_VERSION, "files": files, "metadata": metadata or {}}
    target = directory / MANIFEST
    try:
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{target}: metadata is not plain JSON: {_one_line(e)}") from e
    return write_text_atomic(target, text + "\n")


def verify_manifest(directory: Path) -> dict[str, object]:
    """Check every file of ``directory`` against its manifest and return the manifest.

    Raises :class:`ArtifactError` naming the first file (in path order) that is missing, was added, or
    whose size or SHA-256 differs, or naming the manifest when it is missing or corrupt.
    """
    directory = Path(directory)
    target = directory / MANIFEST
    if not target.is_file():
        raise ArtifactError(f"{target}: missing: not an Engage model directory")
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ArtifactError(f"{target}: corrupt: not valid JSON ({_one_line(e)})") from e
    expected = _manifest_files(manifest, target)
    on_disk = _list_files(directory)

    problems: list[tuple[str, str]] = []
    for rel, (digest, size) in expected.items():
        file = on_disk.get(rel)
        if file is None:
            problems.append((rel, "missing: listed in the manifest but not on disk"))
            continue
        actual_size = file.stat().st_size
        if actual_size != size:
            problems.append(
                (
                    rel,
                    f"size mismatch (manifest {size} bytes, file {actual_size} bytes): "
                    "the artifact was changed after it was written",
                )
            )
            continue
        actual = sha256_file(file)
        if actual != digest:
            problems.append(
                (
                    rel,
                    f"SHA-256 mismatch (manifest {digest[:12]}…, file {actual[:12]}…): "
                    "the artifact was changed after it was written",
                )
            )
    problems.extend(
        (rel, "not in the manifest: the file was added after the manifest was written")
        for rel in on_disk.keys() - expected.keys()
    )
    if problems:
        problems.sort()
        rel, what = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ArtifactError(f"{directory / rel}: {what}{more}")
    result: dict[str, object] = manifest
    return result


def _list_files(directory: Path) -> dict[str, Path]:
    """Every file below ``directory`` except the top-level manifest, by relative POSIX path, sorted."""
    found: dict[str, Path] = {}
    for root, dirs, names in os.walk(directory):
        for name in [*dirs, *names]:
            entry = Path(root, name)
            if entry.is_symlink():
                raise ArtifactError(f"{entry}: a symbolic link: a model directory holds only plain files")
        for name in names:
            entry = Path(root, name)
            rel = entry.relative_to(directory).as_posix()
            if rel == MANIFEST:
                continue
            if not entry.is_file():
                raise ArtifactError(f"{entry}: not a regular file: a model directory holds only plain files")
            found[rel] = entry
    return dict(sorted(found.items()))


def _manifest_files(manifest: Any, target: Path) -> dict[str, tuple[str, int]]:
    """The ``{path: (sha256, size)}`` a manifest lists; :class:`ArtifactError` unless it is well formed."""

    def corrupt(what: str) -> ArtifactError:
        return ArtifactError(f"{target}: corrupt: {what}")

    if not isinstance(manifest, dict):
        raise corrupt("not a JSON object")
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise corrupt(
            f"manifest_version is {manifest.get('manifest_version')!r}, expected {MANIFEST_VERSION}"
        )
    if not isinstance(manifest.get("metadata"), dict):
        raise corrupt("metadata is not an object")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise corrupt("files is not a list")
    expected: dict[str, tuple[str, int]] = {}
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise corrupt(f"files[{i}] is not an object")
        rel, digest, size = entry.get("path"), entry.get("sha256"), entry.get("size")
        if not isinstance(rel, str) or not _is_plain_relative(rel):
            raise corrupt(f"files[{i}].path {rel!r} is not a relative path inside the directory")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise corrupt(f"files[{i}].sha256 is not a SHA-256 hex digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise corrupt(f"files[{i}].size is not a byte count")
        if rel in expected:
            raise corrupt(f"{rel} is listed twice")
        expected[rel] = (digest, size)
    return expected


def _is_plain_relative(rel: str) -> bool:
    pure = PurePosixPath(rel)
    return (
        rel == pure.as_posix()
        and not pure.is_absolute()
        and "\\" not in rel
        and all(part not in ("", ".", "..") for part in pure.parts)
        and rel != MANIFEST
    )


# --- helpers -------------------------------------------------------------------------------------------


def _require_suffix(path: Path, suffix: str) -> None:
    if path.suffix != suffix:
        raise ArtifactError(f"{path}: the file name must end in {suffix}")


def _read_artifact(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing: no such file") from e
    except OSError as e:
        raise ArtifactError(f"{path}: unreadable: {e.strerror or e}") from e


def _one_line(error: BaseException) -> str:
    """The first line of an exception's message (xgboost's carry a stack trace), at most 200 characters."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"
