"""Model artifacts: XGBoost as UBJSON, scikit-learn via skops with an explicit allow-list, manifests."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io  # type: ignore[import-untyped]
import xgboost as xgb
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import engage.artifacts
import engage.artifacts._sklearn
from engage._io import sha256_file
from engage.artifacts import (
    MANIFEST,
    TRUSTED_SKLEARN_TYPES,
    load_sklearn,
    load_xgboost,
    save_sklearn,
    save_xgboost,
    verify_manifest,
    write_manifest,
)
from engage.errors import ArtifactError, EngageError

ROWS = 300


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    # a missing level among the categories, as an unseen level at serving time becomes missing
    levels = rng.choice(np.array(["basic", "plus", "pro", None], dtype=object), ROWS, p=[0.4, 0.3, 0.2, 0.1])
    x = pd.DataFrame(
        {
            "tenure": rng.gamma(2.0, 10.0, ROWS),
            "sessions": rng.poisson(5.0, ROWS).astype("float64"),
            "plan": pd.Categorical(levels, categories=["basic", "plus", "pro"]),
        }
    )
    signal = 0.05 * x["tenure"] - 0.3 * x["sessions"] + (x["plan"] == "pro").to_numpy() * 1.5
    x["y"] = signal + rng.normal(0.0, 0.5, ROWS)
    x["churn"] = (signal + rng.normal(0.0, 1.0, ROWS)) < signal.median()
    return x


@pytest.fixture(scope="module")
def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["tenure", "sessions", "plan"]]


@pytest.fixture(scope="module")
def numeric(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return frame[["tenure", "sessions"]].to_numpy()


@pytest.fixture(scope="module")
def xgb_models(frame: pd.DataFrame, features: pd.DataFrame) -> dict[str, Any]:
    params = {"n_estimators": 15, "max_depth": 3, "enable_categorical": True, "n_jobs": 1, "random_state": 0}
    return {
        "regressor": xgb.XGBRegressor(**params).fit(features, frame["y"]),
        "classifier": xgb.XGBClassifier(**params).fit(features, frame["churn"].astype(int)),
    }


@pytest.fixture(scope="module")
def sklearn_models(
    frame: pd.DataFrame, features: pd.DataFrame, numeric: np.ndarray[Any, Any]
) -> dict[str, Any]:
    hgb = {"categorical_features": "from_dtype", "max_iter": 15, "max_depth": 3, "random_state": 0}
    return {
        "hgb_regressor": HistGradientBoostingRegressor(**hgb).fit(features, frame["y"]),
        "hgb_classifier": HistGradientBoostingClassifier(**hgb).fit(features, frame["churn"]),
        "isotonic": IsotonicRegression(out_of_bounds="clip").fit(frame["tenure"], frame["churn"]),
        "logistic": LogisticRegression().fit(numeric, frame["churn"]),
    }


def _predict(model: Any, frame: pd.DataFrame, features: pd.DataFrame, numeric: np.ndarray[Any, Any]) -> Any:
    if isinstance(model, IsotonicRegression):
        return model.predict(frame["tenure"])
    if isinstance(model, LogisticRegression):
        return model.predict_proba(numeric)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(features)
    return model.predict(features)


# --- XGBoost -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_xgboost_sklearn_models_round_trip(
    kind: str, xgb_models: dict[str, Any], features: pd.DataFrame, tmp_path: Path
) -> None:
    model = xgb_models[kind]
    path = save_xgboost(model, tmp_path / f"{kind}.ubj")
    assert path == tmp_path / f"{kind}.ubj"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{kind}.ubj"]  # no temporary file left
    assert path.read_bytes().startswith(b"{L")  # UBJSON (a JSON file starts with '{"')

    loaded = load_xgboost(path, kind=kind)  # type: ignore[call-overload]
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(features), model.predict(features))
    if kind == "classifier":
        np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))

    booster = load_xgboost(path)
    assert isinstance(booster, xgb.Booster)
    matrix = xgb.DMatrix(features, enable_categorical=True)
    np.testing.assert_array_equal(booster.predict(matrix), model.get_booster().predict(matrix))


def test_xgboost_booster_round_trip(frame: pd.DataFrame, features: pd.DataFrame, tmp_path: Path) -> None:
    matrix = xgb.DMatrix(features, label=frame["churn"].astype(int), enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, matrix, 10)
    loaded = load_xgboost(save_xgboost(booster, tmp_path / "churn.ubj"), kind="booster")
    np.testing.assert_array_equal(loaded.predict(matrix), booster.predict(matrix))


def test_xgboost_wrong_kind_is_refused(xgb_models: dict[str, Any], tmp_path: Path) -> None:
    path = save_xgboost(xgb_models["regressor"], tmp_path / "ltv.ubj")
    with pytest.raises(ArtifactError, match=r"ltv\.ubj: not a readable XGBoost classifier model"):
        load_xgboost(path, kind="classifier")


def test_save_xgboost_wants_ubj_and_a_fitted_model(xgb_models: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"churn\.json: the file name must end in \.ubj"):
        save_xgboost(xgb_models["classifier"], tmp_path / "churn.json")
    with pytest.raises(Exception, match="fit"):
        save_xgboost(xgb.XGBRegressor(), tmp_path / "unfitted.ubj")
    assert list(tmp_path.iterdir()) == []  # a failed save leaves nothing behind


# --- scikit-learn --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hgb_regressor", "hgb_classifier", "isotonic", "logistic"])
def test_sklearn_models_round_trip(
    name: str,
    sklearn_models: dict[str, Any],
    frame: pd.DataFrame,
    features: pd.DataFrame,
    numeric: np.ndarray[Any, Any],
    tmp_path: Path,
) -> None:
    model = sklearn_models[name]
    path = save_sklearn(model, tmp_path / f"{name}.skops")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.skops"]
    loaded = load_sklearn(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(
        _predict(loaded, frame, features, numeric), _predict(model, frame, features, numeric)
    )


def test_trusted_list_is_what_our_models_hold(sklearn_models: dict[str, Any]) -> None:
    """Every trusted type is needed by one of the models, and the models need no other."""
    held: set[str] = set()
    for model in sklearn_models.values():
        held |= engage.artifacts._sklearn._skops_types(skops.io.dumps(model))
    assert held == set(TRUSTED_SKLEARN_TYPES)
    assert len(TRUSTED_SKLEARN_TYPES) == len(set(TRUSTED_SKLEARN_TYPES))


@pytest.mark.parametrize(
    ("make", "refused"),
    [
        # trusted by skops by default, but not by Engage
        (lambda: Pipeline([("model", LogisticRegression())]), "sklearn.pipeline.Pipeline"),
        (lambda: {"weights": collections.OrderedDict(a=1.0)}, "collections.OrderedDict"),
        # untrusted by skops too
        (lambda: {"hook": eval}, "builtins.eval"),
    ],
    ids=["pipeline", "ordered-dict", "eval"],
)
def test_untrusted_types_are_refused(make: Any, refused: str, tmp_path: Path) -> None:
    path = tmp_path / "x.skops"
    skops.io.dump(make(), path)
    with pytest.raises(ArtifactError) as caught:
        load_sklearn(path)
    assert str(caught.value).startswith(f"{path}: untrusted types refused: ")
    assert refused in str(caught.value)
    assert "\n" not in str(caught.value)


def test_trusted_list_is_explicit(sklearn_models: dict[str, Any], tmp_path: Path) -> None:
    path = save_sklearn(sklearn_models["logistic"], tmp_path / "lr.skops")
    with pytest.raises(ArtifactError, match=r"untrusted types refused: .*LogisticRegression"):
        load_sklearn(path, trusted=["builtins.dict", "builtins.str", "numpy.ndarray"])
    assert isinstance(load_sklearn(path, trusted=TRUSTED_SKLEARN_TYPES), LogisticRegression)


@pytest.mark.parametrize(
    ("field", "value"),
    [("left", 10_000), ("right", 0), ("feature_idx", 3), ("bitset_idx", 99)],
)
def test_damaged_trees_are_refused(
    field: str, value: int, sklearn_models: dict[str, Any], tmp_path: Path
) -> None:
    """A tree index scikit-learn would follow out of bounds is refused at load, not at prediction."""
    model = skops.io.loads(
        skops.io.dumps(sklearn_models["hgb_regressor"]), trusted=list(TRUSTED_SKLEARN_TYPES)
    )
    tree = next(t for trees in model._predictors for t in trees if (t.nodes["is_categorical"] == 1).any())
    node = int(np.flatnonzero(tree.nodes["is_categorical"] == 1)[0]) if field == "bitset_idx" else 0
    tree.nodes[field][node] = value
    path = save_sklearn(model, tmp_path / "damaged.skops")
    with pytest.raises(ArtifactError, match=r"damaged\.skops: corrupt histogram gradient boosting model"):
        load_sklearn(path)


def test_save_sklearn_wants_skops_suffix(sklearn_models: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"\.skops"):
        save_sklearn(sklearn_models["logistic"], tmp_path / "lr.pkl")


# --- corrupt and missing files -------------------------------------------------------------------------


def _garbage(kind: str, good: bytes) -> bytes:
    return {
        "empty": b"",
        "text": b"this is not a model\n",
        "random": np.random.default_rng(3).bytes(4096),
        "truncated": good[: len(good) // 2],
        "cut-short": good[:-1],
        "brace": b"{" + np.random.default_rng(4).bytes(512),
    }[kind]


GARBAGE = ["empty", "text", "random", "truncated", "cut-short", "brace"]


@pytest.mark.parametrize("kind", GARBAGE)
def test_corrupt_ubj_is_an_artifact_error(kind: str, xgb_models: dict[str, Any], tmp_path: Path) -> None:
    good = save_xgboost(xgb_models["classifier"], tmp_path / "good.ubj").read_bytes()
    path = tmp_path / "churn.ubj"
    path.write_bytes(_garbage(kind, good))
    for load_as in ("booster", "classifier"):
        with pytest.raises(ArtifactError) as caught:
            load_xgboost(path, kind=load_as)
        assert str(caught.value).startswith(f"{path}: not a readable XGBoost {load_as} model: ")
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", GARBAGE)
def test_corrupt_skops_is_an_artifact_error(
    kind: str, sklearn_models: dict[str, Any], tmp_path: Path
) -> None:
    good = save_sklearn(sklearn_models["hgb_classifier"], tmp_path / "good.skops").read_bytes()
    path = tmp_path / "churn.skops"
    path.write_bytes(_garbage(kind, good))
    with pytest.raises(ArtifactError) as caught:
        load_sklearn(path)
    assert str(caught.value).startswith(f"{path}: not a readable skops file: ")
    assert "\n" not in str(caught.value)


def test_missing_files_are_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"churn\.ubj: missing"):
        load_xgboost(tmp_path / "churn.ubj")
    with pytest.raises(ArtifactError, match=r"churn\.skops: missing"):
        load_sklearn(tmp_path / "churn.skops")


def test_artifact_error_is_an_engage_error() -> None:
    assert issubclass(ArtifactError, EngageError)
    assert "ArtifactError" in __import__("engage.errors").errors.__all__


def test_no_pickle_anywhere_in_the_package() -> None:
    """No loader of the package can unpickle: none imports a pickling module or lets numpy unpickle (the
    package names pickles only to refuse them)."""
    import re

    unpickling = re.compile(
        r"^\s*(import|from)\s+(pickle|_pickle|cPickle|joblib|dill|cloudpickle|torch)\b|allow_pickle\s*=\s*True"
        r"|pickle\.loads?\(|read_pickle",
        re.M,
    )
    modules = sorted(Path(engage.artifacts.__file__).parent.glob("*.py"))
    assert len(modules) > 1
    for module in modules:
        assert unpickling.search(module.read_text(encoding="utf-8")) is None, module.name


# --- manifest ------------------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path: Path, xgb_models: dict[str, Any], sklearn_models: dict[str, Any]) -> Path:
    directory = tmp_path / "model"
    save_xgboost(xgb_models["classifier"], directory / "churn.ubj")
    save_sklearn(sklearn_models["isotonic"], directory / "calibration" / "churn.skops")
    (directory / "features.json").write_text('{"numeric": ["tenure"]}\n', encoding="utf-8")
    write_manifest(directory, metadata={"model": "churn", "auc": 0.81, "features": ["tenure"]})
    return directory


def test_manifest_lists_every_file(model_dir: Path) -> None:
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    assert [f["path"] for f in manifest["files"]] == ["calibration/churn.skops", "churn.ubj", "features.json"]
    for entry in manifest["files"]:
        file = model_dir / entry["path"]
        assert entry["sha256"] == sha256_file(file)
        assert entry["size"] == file.stat().st_size
    assert manifest["metadata"] == {"model": "churn", "auc": 0.81, "features": ["tenure"]}
    assert verify_manifest(model_dir) == manifest
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "calibration",
        "churn.ubj",
        "features.json",
        MANIFEST,
    ]


def test_manifest_without_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    write_manifest(tmp_path)
    assert verify_manifest(tmp_path)["metadata"] == {}


@pytest.mark.parametrize("rel", ["churn.ubj", "calibration/churn.skops", "features.json"])
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_one_changed_byte_is_found(rel: str, where: float, model_dir: Path) -> None:
    file = model_dir / rel
    data = bytearray(file.read_bytes())
    at = int(where * len(data)) if where >= 0 else len(data) - 1
    data[at] ^= 0x01
    file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError) as caught:
        verify_manifest(model_dir)
    message = str(caught.value)
    assert message.startswith(f"{model_dir / rel}: SHA-256 mismatch (manifest ")
    assert message.endswith("the artifact was changed after it was written")
    assert "\n" not in message


def test_changed_size_is_found(model_dir: Path) -> None:
    with (model_dir / "features.json").open("ab") as f:
        f.write(b" ")
    with pytest.raises(
        ArtifactError, match=r"features\.json: size mismatch \(manifest \d+ bytes, file \d+ bytes\)"
    ):
        verify_manifest(model_dir)


def test_removed_file_is_found(model_dir: Path) -> None:
    (model_dir / "calibration" / "churn.skops").unlink()
    with pytest.raises(
        ArtifactError, match=r"model/calibration/churn\.skops: missing: listed in the manifest"
    ):
        verify_manifest(model_dir)


def test_extra_file_is_found(model_dir: Path) -> None:
    (model_dir / "calibration" / "extra.skops").write_bytes(b"PK")
    with pytest.raises(ArtifactError, match=r"model/calibration/extra\.skops: not in the manifest"):
        verify_manifest(model_dir)


def test_several_problems_make_one_line(model_dir: Path) -> None:
    (model_dir / "churn.ubj").unlink()
    (model_dir / "zzz.txt").write_text("new", encoding="utf-8")
    with pytest.raises(ArtifactError) as caught:
        verify_manifest(model_dir)
    assert (
        str(caught.value)
        == f"{model_dir / 'churn.ubj'}: missing: listed in the manifest but not on disk (and 1 more problems)"
    )


def test_missing_manifest(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    directory.mkdir()
    with pytest.raises(ArtifactError) as caught:
        verify_manifest(directory)
    assert str(caught.value) == f"{directory / MANIFEST}: missing: not an Engage model directory"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"files": [', "not valid JSON"),
        ("\xff\xfe", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"manifest_version": 2, "files": [], "metadata": {}}', "manifest_version"),
        ('{"manifest_version": 1, "files": {}, "metadata": {}}', "files is not a list"),
        ('{"manifest_version": 1, "files": [], "metadata": []}', "metadata is not an object"),
    ],
)
def test_corrupt_manifest(text: str, problem: str, model_dir: Path) -> None:
    (model_dir / MANIFEST).write_text(text, encoding="latin-1")
    with pytest.raises(ArtifactError) as caught:
        verify_manifest(model_dir)
    assert str(caught.value).startswith(f"{model_dir / MANIFEST}: corrupt: ")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"path": "../outside.txt"}, "not a relative path inside the directory"),
        ({"path": "/etc/passwd"}, "not a relative path inside the directory"),
        ({"path": "./churn.ubj"}, "not a relative path inside the directory"),
        ({"sha256": "abc"}, "not a SHA-256 hex digest"),
        ({"size": -1}, "not a byte count"),
        ({"size": True}, "not a byte count"),
    ],
)
def test_manifest_entries_are_checked(entry: dict[str, object], problem: str, model_dir: Path) -> None:
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][0].update(entry)
    (model_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match=f"corrupt: files\\[0\\]\\..*{problem}"):
        verify_manifest(model_dir)


def test_manifest_refuses_symlinks_and_bad_metadata(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ArtifactError, match="metadata is not plain JSON"):
        write_manifest(tmp_path, metadata={"auc": float("nan")})
    assert not (tmp_path / MANIFEST).exists()
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    with pytest.raises(ArtifactError, match=r"link\.txt: a symbolic link"):
        write_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="missing: not a directory"):
        write_manifest(tmp_path / "absent")


# --- no pickle -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.pkl", "calibration/iso.joblib", "x.PICKLE", "net.pt", "f.dill"])
def test_a_pickle_file_is_refused_by_name(name: str, tmp_path: Path) -> None:
    """Whatever it holds: a bundle never carries a file whose name says it holds pickled objects."""
    file = tmp_path / "model" / name
    file.parent.mkdir(parents=True)
    file.write_bytes(b"{}")
    with pytest.raises(ArtifactError) as caught:
        write_manifest(tmp_path / "model")
    assert str(caught.value).startswith(f"{file}: a pickle file ({Path(name).suffix.lower()}) refused: ")
    assert not (tmp_path / "model" / MANIFEST).exists()


def test_a_manifest_listing_a_pickle_is_refused(model_dir: Path) -> None:
    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][0]["path"] = "churn.pkl"
    (model_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"files\[0\] churn\.pkl: a pickle file \(\.pkl\) refused"):
        verify_manifest(model_dir)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_content_is_refused_whatever_the_name(protocol: int, tmp_path: Path, model_dir: Path) -> None:
    import pickle  # the test makes one; the package never imports pickle (test above)

    payload = pickle.dumps({"looks": "harmless"}, protocol=protocol)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "weights.bin").write_bytes(payload)
    with pytest.raises(ArtifactError, match=rf"weights\.bin: pickled data \(protocol {protocol}\) refused"):
        write_manifest(fresh)
    # swapped into a written bundle: refused for what it is, before its digest is even compared
    (model_dir / "features.json").write_bytes(payload)
    with pytest.raises(ArtifactError, match=rf"features\.json: pickled data \(protocol {protocol}\) refused"):
        verify_manifest(model_dir)


def test_the_signature_file_sits_beside_the_manifest_unlisted(model_dir: Path) -> None:
    from engage.artifacts import SIGNATURE

    manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
    (model_dir / SIGNATURE).write_text("{}", encoding="utf-8")
    assert verify_manifest(model_dir) == manifest  # not an extra file
    write_manifest(model_dir, metadata=manifest["metadata"])
    assert json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))["files"] == manifest["files"]
