"""engage.drift on small seeded tables: both backends agree, shifts are found and unshifted samples pass,
the window slides, the cadence, missing values, and rows refused with the field at fault."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pytest
from pydantic import ValidationError

from engage.drift import REFUSED, DriftDetector, DriftSettings, Reference, decide
from engage.encoding import EXPECTED_FINITE, MISSING_FEATURE, NOT_A_ROW, describe
from engage.errors import ArtifactError, RequestRejected

CATEGORICAL = {"plan": ["free", "basic", "premium"], "channel": ["web", "ios", "android"]}
HEADS = ("churn_probability", "ltv")


def table(
    n: int, seed: int, *, age_shift: float = 0.0, plan_p: tuple[float, float, float] = (0.5, 0.3, 0.2)
) -> pd.DataFrame:
    """Customers: two continuous, one count and two categorical features; spend is missing 10 % of the time."""
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 50.0, n)
    spend[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "age": rng.normal(40.0 + age_shift, 10.0, n),
            "spend": spend,
            "visits": rng.poisson(5, n).astype(float),
            "plan": rng.choice(CATEGORICAL["plan"], n, p=list(plan_p)),
            "channel": rng.choice(CATEGORICAL["channel"], n),
        }
    )


def predictions(n: int, seed: int, shift: float = 0.0) -> dict[str, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {"churn_probability": rng.beta(2.0 + shift, 5.0, n), "ltv": rng.gamma(2.0, 300.0, n)}


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(table(5_000, seed=1), categorical=CATEGORICAL, p_value=0.05)


@pytest.fixture(scope="module")
def detectors(reference: Reference) -> dict[str, DriftDetector]:
    ref_predictions = predictions(5_000, seed=2)
    return {
        backend: DriftDetector(
            reference, DriftSettings(backend=backend), reference_predictions=ref_predictions
        )
        for backend in ("alibi-detect", "scipy")
    }


# ---- the two backends ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_both_backends_give_the_same_tests(
    reference: Reference, detectors: dict[str, DriftDetector], shift: float
) -> None:
    x = reference.encode(table(800, seed=7, age_shift=shift))
    alibi, scipy = (detectors[b].test(x)["data"] for b in ("alibi-detect", "scipy"))
    for feature in reference.features:
        # alibi-detect keeps p-values as float32
        assert alibi["p_val"][feature] == pytest.approx(scipy["p_val"][feature], rel=1e-5, abs=1e-7), feature
        assert alibi["distance"][feature] == pytest.approx(scipy["distance"][feature], rel=1e-5, abs=1e-7), (
            feature
        )
    assert alibi["feature_drift"] == scipy["feature_drift"]
    assert (alibi["is_drift"], alibi["threshold"]) == (scipy["is_drift"], scipy["threshold"])
    assert alibi["outlier_score"] == scipy["outlier_score"]


@pytest.mark.parametrize("backend", ["alibi-detect", "scipy"])
def test_a_shifted_window_is_drift_and_names_the_features(
    reference: Reference, detectors: dict[str, DriftDetector], backend: str
) -> None:
    shifted = table(1_000, seed=8, age_shift=4.0, plan_p=(0.3, 0.3, 0.4))
    data = detectors[backend].test(reference.encode(shifted))["data"]
    assert data["is_drift"] == 1
    assert data["feature_drift"] == {"age": 1, "spend": 0, "visits": 0, "plan": 1, "channel": 0}
    assert data["threshold"] == pytest.approx(0.05 / 5)
    assert data["window_rows"] == 1_000


@pytest.mark.parametrize("backend", ["alibi-detect", "scipy"])
def test_unshifted_samples_raise_no_false_alarm_at_the_default_p(
    reference: Reference, detectors: dict[str, DriftDetector], backend: str
) -> None:
    alarms = [
        detectors[backend].test(reference.encode(table(1_000, seed=100 + i)))["data"]["is_drift"]
        for i in range(10)
    ]
    # Bonferroni keeps the family-wise false-alarm rate at or below 5 % a test (spend is missing 10 % of
    # the time in these samples as in the reference: no alarm from that either)
    assert sum(alarms) <= 1


def test_the_result_has_one_schema_that_serialises_to_json(
    reference: Reference, detectors: dict[str, DriftDetector]
) -> None:
    for backend, detector in detectors.items():
        result = detector.test(reference.encode(table(300, seed=9)), predictions=predictions(300, seed=3))
        assert set(result) == {"data", "meta"}
        assert set(result["data"]) == {
            "is_drift", "p_val", "distance", "test", "threshold", "feature_drift", "prediction_drift",
            "outlier_score", "outlier_share", "window_rows",
        }  # fmt: skip
        tests = result["data"]["test"]
        assert set(tests) == set(result["data"]["distance"])
        assert tests == {f: "chi2" if f in reference.categorical else "ks" for f in tests}
        assert "ks" in tests.values()
        assert "chi2" in tests.values()
        assert set(result["meta"]) == {
            "backend", "name", "correction", "reference_rows", "duration_seconds", "tested_at",
        }  # fmt: skip
        assert result["meta"]["name"] == {"alibi-detect": "TabularDrift", "scipy": "ks/chi2 (scipy)"}[backend]
        assert result["meta"]["reference_rows"] == 5_000
        assert json.loads(orjson.dumps(result)) == result  # plain floats and ints only
        assert set(result["data"]["prediction_drift"]) == set(HEADS)


def test_fdr_is_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    threshold, flags = decide(p, 0.05, "fdr")
    assert threshold == pytest.approx(0.05 * 2 / 10)  # the 2nd smallest is the largest under its bar
    assert flags.tolist() == [True, True] + [False] * 8
    threshold, flags = decide(p, 0.05, "bonferroni")
    assert threshold == pytest.approx(0.005)
    assert flags.tolist() == [True] + [False] * 9
    threshold, flags = decide(np.array([0.5, 0.9]), 0.05, "fdr")
    assert threshold == pytest.approx(0.025)  # nothing passed: the strictest bar
    assert not flags.any()


def test_fdr_backends_agree_and_flag_the_shift(reference: Reference) -> None:
    settings = {b: DriftSettings(backend=b, correction="fdr") for b in ("alibi-detect", "scipy")}
    x = reference.encode(table(1_000, seed=11, age_shift=2.0))
    results = [DriftDetector(reference, s).test(x)["data"] for s in settings.values()]
    assert results[0]["feature_drift"] == results[1]["feature_drift"]
    assert results[0]["feature_drift"]["age"] == 1
    assert results[0]["threshold"] == pytest.approx(results[1]["threshold"])


# ---- prediction drift and outliers --------------------------------------------------------------------


def test_prediction_drift_per_head(reference: Reference, detectors: dict[str, DriftDetector]) -> None:
    detector = detectors["scipy"]
    x = reference.encode(table(600, seed=12))
    same = detector.test(x, predictions=predictions(600, seed=13))["data"]["prediction_drift"]
    moved = detector.test(x, predictions=predictions(600, seed=13, shift=1.5))["data"]["prediction_drift"]
    assert {h: t["is_drift"] for h, t in same.items()} == {"churn_probability": 0, "ltv": 0}
    assert {h: t["is_drift"] for h, t in moved.items()} == {"churn_probability": 1, "ltv": 0}
    assert moved["churn_probability"]["distance"] > same["churn_probability"]["distance"]
    assert detector.test(x)["data"]["prediction_drift"] == {}  # no predictions given: no test


def test_outliers_are_scored_against_the_reference(
    reference: Reference, detectors: dict[str, DriftDetector]
) -> None:
    detector = detectors["scipy"]
    usual = detector.test(reference.encode(table(2_000, seed=14)))["data"]
    odd = table(200, seed=15)
    odd["age"], odd["visits"] = 95.0, 60.0
    strange = detector.test(reference.encode(odd))["data"]
    assert usual["outlier_share"] < 0.03  # the reference's 0.99 quantile: about 1 % above it
    assert strange["outlier_share"] > 0.9
    assert strange["outlier_score"] > usual["outlier_score"]


# ---- the window and the cadence -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_keeps_the_most_recent_rows(reference: Reference) -> None:
    detector = DriftDetector(reference, DriftSettings(backend="scipy", window_size=50, min_rows=10))
    rows = np.tile(reference.matrix[:1], (120, 1))
    rows[:, 0] = np.arange(120)  # age = arrival order
    detector.add_rows(rows[:30])
    assert detector.window_rows == 30
    detector.add_rows(rows[30:45])
    detector.add_rows(rows[45])  # one row, as one event brings
    detector.add_rows(rows[46:120])
    assert (detector.window_rows, detector.rows_seen) == (50, 120)
    assert detector.window()[:, 0].tolist() == list(range(70, 120))  # oldest first
    assert detector.test()["data"]["window_rows"] == 50
    detector.add_rows(np.tile(rows[:1], (500, 1)))  # more than the window at once
    assert detector.window()[:, 0].tolist() == [0.0] * 50


def test_cadence_rows_or_seconds_once_the_window_holds_min_rows(reference: Reference) -> None:
    clock = Clock()
    settings = DriftSettings(
        backend="scipy", window_size=100, min_rows=20, test_every_rows=30, test_every_seconds=10
    )
    detector = DriftDetector(reference, settings, clock=clock)
    row = reference.matrix[:1]
    assert not detector.due()
    detector.add_rows(np.repeat(row, 15, axis=0))
    clock.now += 60
    assert not detector.due()  # time is up, but the window holds fewer than min_rows
    detector.add_rows(np.repeat(row, 10, axis=0))
    assert detector.due()  # 25 rows >= min_rows and 60 s since the start
    assert detector.latest is None
    detector.test()
    assert detector.latest is not None
    assert not detector.due()
    detector.add_rows(np.repeat(row, 29, axis=0))
    assert not detector.due()
    detector.add_rows(row)
    assert detector.due()  # 30 new rows
    detector.test()
    clock.now += 11
    assert not detector.due()  # time is up, but nothing new to test
    detector.add_rows(row)
    assert detector.due()
    given = detector.test(reference.matrix[:5])
    assert given["data"]["window_rows"] == 5
    assert detector.due()  # a test of given rows leaves the window and the cadence be


def test_rows_added_from_many_threads_while_testing_are_all_counted(reference: Reference) -> None:
    detector = DriftDetector(reference, DriftSettings(backend="scipy", window_size=500, min_rows=10))
    x = reference.matrix[:200]
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for i in range(200):
                detector.add_rows(x[i])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        if detector.window_rows:
            detector.test()
    for t in threads:
        t.join()
    assert not errors
    assert (detector.rows_seen, detector.window_rows) == (800, 500)


def test_settings_check_their_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="min_rows"):
        DriftSettings(window_size=100, min_rows=200)
    with pytest.raises(ValidationError, match="backend"):
        DriftSettings(backend="sklearn")  # type: ignore[arg-type,unused-ignore]
    monkeypatch.setenv("ENGAGE_DRIFT_BACKEND", "scipy")
    monkeypatch.setenv("ENGAGE_DRIFT_P_VALUE", "0.01")
    assert (DriftSettings().backend, DriftSettings().p_value) == ("scipy", 0.01)


def test_the_settings_p_value_overrides_the_references(reference: Reference) -> None:
    detector = DriftDetector(reference, DriftSettings(backend="scipy", p_value=0.01))
    assert detector.p_value == 0.01
    assert detector.test(reference.matrix[:100])["data"]["threshold"] == pytest.approx(0.01 / 5)


# ---- missing values -----------------------------------------------------------------------------------


def test_missing_values_are_imputed_the_same_in_both_backends(
    reference: Reference, detectors: dict[str, DriftDetector]
) -> None:
    window = table(600, seed=16)
    window.loc[::4, "age"] = np.nan
    window.loc[::5, "plan"] = None
    window.loc[::7, "channel"] = "fax"  # a level the reference never saw: missing or unknown
    x = reference.encode(window)
    assert np.isnan(x).any()
    alibi, scipy = (detectors[b].test(x)["data"] for b in ("alibi-detect", "scipy"))
    assert all(np.isfinite(list(alibi["p_val"].values())))
    for feature in reference.features:
        assert alibi["p_val"][feature] == pytest.approx(scipy["p_val"][feature], rel=1e-5, abs=1e-7)
    # a missing share that moves is drift (25 % of age and 20 % of plan missing, none in the reference)
    assert (
        alibi["feature_drift"]["age"]
        == alibi["feature_drift"]["plan"]
        == alibi["feature_drift"]["channel"]
        == 1
    )
    # spend is missing 10 % of the time in both: no drift from that
    assert alibi["feature_drift"]["spend"] == 0
    assert np.isnan(reference.matrix[:, 1]).any()  # the reference's own missing spend


# ---- encoding and refusals ----------------------------------------------------------------------------


def test_rows_from_json_encode_like_the_same_rows_as_a_frame(reference: Reference) -> None:
    frame = table(50, seed=18)
    records: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    records[0]["visits"] = "7"  # numeric text is a number
    records[1]["spend"] = ""  # blank is missing
    records[2]["plan"] = "gold"  # unknown level is missing
    frame.loc[0, "visits"], frame.loc[1, "spend"], frame.loc[2, "plan"] = 7.0, np.nan, None
    from_rows = reference.encode(records)
    np.testing.assert_allclose(from_rows, reference.encode(frame), rtol=1e-9)  # JSON keeps 10 digits
    columns = {name: [r[name] for r in records] for name in reference.features}
    np.testing.assert_array_equal(from_rows, reference.encode_columns(columns))
    assert np.isnan(from_rows[2, reference.features.index("plan")])


def test_bad_rows_are_refused_naming_row_and_field(reference: Reference) -> None:
    good: dict[str, Any] = {"age": 30, "spend": 12.5, "visits": 3, "plan": "free", "channel": "web"}
    rows: list[Any] = [
        good,
        [30, 12.5, 3, "free", "web"],
        {k: v for k, v in good.items() if k != "plan"},
        {**good, "age": "thirty"},
        {**good, "visits": True},
        {**good, "spend": {"value": 1}},
        {**good, "age": "inf"},
    ]
    with pytest.raises(RequestRejected) as caught:
        reference.encode(rows)
    error = caught.value
    assert (error.http_status, error.reason) == (422, "wrong_type")  # the first problem's
    assert error.details == [
        {"row": 1, "field": None, "error": NOT_A_ROW.format(lists="", kind=describe([]))},
        {"row": 2, "field": "plan", "error": MISSING_FEATURE},
        {"row": 3, "field": "age", "error": f"expected a number, got {describe('thirty')}"},
        {"row": 4, "field": "visits", "error": f"expected a number, got {describe(True)}"},
        {"row": 5, "field": "spend", "error": f"expected a number, got {describe({})}"},
        {"row": 6, "field": "age", "error": EXPECTED_FINITE},
    ]
    assert error.message.startswith(f"{REFUSED}: row 1, a row must be an object, not a list")
    assert error.message.endswith("(and 5 more problem(s), see details)")


def test_bad_columns_are_refused_naming_the_field(reference: Reference) -> None:
    columns: dict[str, list[Any]] = {
        "age": [30, "x"],
        "spend": [1.0, 2.0],
        "visits": [1, 2],
        "plan": ["free", "basic"],
    }
    with pytest.raises(RequestRejected) as caught:
        reference.encode_columns(columns)
    assert caught.value.details == [{"field": "channel", "error": MISSING_FEATURE}]
    columns["channel"] = ["web", "ios"]
    with pytest.raises(RequestRejected) as caught:
        reference.encode_columns(columns)
    assert caught.value.details == [
        {"row": 1, "field": "age", "error": f"expected a number, got {describe('x')}"}
    ]
    columns["age"] = [30]
    with pytest.raises(RequestRejected, match="field 'spend': 2 values, but 'age' has 1: one value a row"):
        reference.encode_columns(columns)


# ---- the reference folder -----------------------------------------------------------------------------


def write_reference(folder: Path, frame: pd.DataFrame, **summary: Any) -> Path:
    from engage.tables import write_table

    folder.mkdir(parents=True, exist_ok=True)
    write_table(frame, folder / "reference.parquet")
    body = {"rows": len(frame), "features": list(frame.columns), "categorical": CATEGORICAL, "p_value": 0.01}
    (folder / "summary.json").write_text(json.dumps({**body, **summary}), encoding="utf-8")
    return folder


def test_a_reference_folder_loads_with_its_summary(tmp_path: Path) -> None:
    frame = table(400, seed=19)
    frame["plan"] = frame["plan"].astype("category")
    loaded = Reference.load(write_reference(tmp_path / "ref", frame))
    assert (loaded.rows, loaded.p_value, loaded.numeric) == (400, 0.01, ["age", "spend", "visits"])
    assert loaded.categorical_indices == [3, 4]
    np.testing.assert_array_equal(
        loaded.matrix, Reference(table(400, seed=19), categorical=CATEGORICAL).matrix
    )


def test_a_missing_or_broken_reference_folder_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a drift reference"):
        Reference.load(tmp_path / "nowhere")
    folder = write_reference(tmp_path / "ref", table(50, seed=20), features=["age", "tenure"])
    with pytest.raises(ArtifactError, match="lacks the summary's feature column"):
        Reference.load(folder)
    (folder / "summary.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="unreadable or incomplete drift summary"):
        Reference.load(folder)
    bad = table(50, seed=21)
    bad["age"] = "old"
    with pytest.raises(ArtifactError, match="cannot be encoded"):
        Reference.load(write_reference(tmp_path / "bad", bad))


def test_auto_backend_is_alibi_detect_when_installed_else_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from engage.drift._detector import resolve_backend
    from engage.errors import ConfigError

    assert DriftSettings().backend == "auto"
    assert resolve_backend("auto") == "alibi-detect"  # the development set installs it
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "alibi_detect" else real(name, *a)
    )
    assert resolve_backend("auto") == "scipy"  # a licence-clean install
    assert resolve_backend("scipy") == "scipy"
    with pytest.raises(ConfigError, match=r"alibi-detect is not installed.*ENGAGE_DRIFT_BACKEND=scipy"):
        resolve_backend("alibi-detect")
