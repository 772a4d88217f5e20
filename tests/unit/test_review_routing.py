"""The pure parts of human review: decision checks, override parsing, the predictor's threshold band,
outlier bounds from the training summary, thresholds from a bundle, and routing while the database is
down."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from engage.errors import GovernanceError

if TYPE_CHECKING:
    from engage_serving.predictor._review import ReviewRouting


def test_check_decision_returns_the_override_values_or_names_the_problem() -> None:
    from engage.governance._review import check_decision

    assert check_decision("approve", reviewer="a", reason="r", override=None) is None
    assert check_decision("override", reviewer="a", reason="r", override={"ltv": 3}) == {"ltv": 3.0}
    for decision, reviewer, reason, override, words in [
        ("approve", "a", "r", {"ltv": 1}, "approval keeps"),
        ("override", "a", "r", None, "at least one output"),
        ("override", "a", "r", {"ltv": True}, "finite number"),
        ("override", "a", "r", {"ltv": float("inf")}, "finite number"),
        ("override", "a", " ", {"ltv": 1}, "reason"),
        ("override", "", "r", {"ltv": 1}, "reviewer"),
        ("veto", "a", "r", None, "approve or override"),
    ]:
        with pytest.raises(GovernanceError, match=words) as info:
            check_decision(decision, reviewer=reviewer, reason=reason, override=override)
        assert info.value.http_status == 400


def test_parse_override_reads_output_equals_number() -> None:
    from engage.governance._review import parse_override

    assert parse_override(["churn_probability=0.9", " ltv = 12 "]) == {"churn_probability": 0.9, "ltv": 12.0}
    for bad in ("ltv", "=1", "ltv=high", "ltv=nan"):
        with pytest.raises(GovernanceError, match="override") as info:
            parse_override([bad])
        assert info.value.http_status == 400


def test_near_threshold_flags_values_within_the_band_of_each_output() -> None:
    from engage_serving.predictor._review import near_threshold

    out = {"churn_probability": [0.1, 0.46, 0.5, 0.549, 0.6], "ltv": [0.5] * 5}
    assert near_threshold(out, {"churn_probability": 0.5}, 0.05) == {
        1: ["churn_probability"],
        2: ["churn_probability"],
        3: ["churn_probability"],
    }
    assert near_threshold(out, {"churn_probability": 0.3}, 0.0) == {}
    assert near_threshold(out, {"missing_probability": 0.5}, 0.5) == {}


def _summary(folder: Path, stats: dict[str, Any]) -> Path:
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"features": list(stats), "stats": stats}))
    return folder


def test_outlier_bounds_use_the_median_and_iqr_of_the_training_summary(tmp_path: Path) -> None:
    from engage_serving.predictor._review import IQR_TO_SIGMA, outlier_bounds

    folder = _summary(
        tmp_path / "ref",
        {
            "spend": {"quantiles": [0, 10, 20, 30, 100]},  # robust sd 20 / 1.349
            "tickets": {"quantiles": [0, 0, 0, 0, 4.653]},  # IQR 0: the tails give sd 1
            "flat": {"quantiles": [3, 3, 3, 3, 3]},  # no spread: never judged
            "plan": {"shares": {"basic": 1.0}},
        },
    )
    bounds = outlier_bounds(["plan", "spend", "tickets", "flat", "unknown"], {0: ["basic"]}, folder)
    assert bounds is not None
    assert bounds.names == ["spend", "tickets"]
    assert bounds.columns.tolist() == [1, 2]
    np.testing.assert_allclose(bounds.scale, [20 / IQR_TO_SIGMA, 1.0])
    X = np.array(
        [
            [0, 20, 0, 3, 0],
            [0, 20 + 6 * 20 / IQR_TO_SIGMA + 1, 0, 3, 0],  # spend beyond 6 robust deviations
            [0, 20, 7, 1e9, 0],  # tickets beyond 6; flat is never judged
            [0, np.nan, np.nan, 3, 0],  # missing is not an outlier
        ],
        dtype=np.float32,
    )
    assert bounds.flags(X, 6.0) == {1: ["spend"], 2: ["tickets"]}
    assert outlier_bounds(["spend"], {}, None) is None


def test_outlier_bounds_fall_back_on_the_reference_rows(tmp_path: Path) -> None:
    import pandas as pd

    from engage.tables import write_table
    from engage_serving.predictor._review import outlier_bounds

    folder = _summary(tmp_path / "ref", {})
    write_table(pd.DataFrame({"spend": np.arange(101, dtype=float)}), folder / "reference.parquet")
    bounds = outlier_bounds(["spend"], {}, folder)
    assert bounds is not None
    assert bounds.median.tolist() == [50.0]
    assert bounds.flags(np.array([[50.0], [50 + 6 * 50 / 1.349 + 1]]), 6.0) == {1: ["spend"]}


def _bundle(metadata: dict[str, Any]) -> Any:
    def head(classification: bool, output: str) -> Any:
        return SimpleNamespace(head=SimpleNamespace(classification=classification, output=output))

    heads = {"churn": head(True, "churn_probability"), "ltv": head(False, "ltv")}
    return SimpleNamespace(metadata=metadata, heads=heads)


def test_decision_thresholds_come_from_the_bundle_else_one_half() -> None:
    from engage_serving.predictor._review import decision_thresholds

    assert decision_thresholds(_bundle({})) == {"churn_probability": 0.5}
    assert decision_thresholds(_bundle({"policy": {"fairness": {"decision_threshold": 0.3}}})) == {
        "churn_probability": 0.3
    }
    both = {"decision_threshold": 0.4, "heads": {"churn": {"decision_threshold": 0.7}}}
    assert decision_thresholds(_bundle(both)) == {"churn_probability": 0.7}
    assert decision_thresholds(_bundle({"decision_threshold": 2})) == {"churn_probability": 0.5}


def test_routing_while_the_database_is_down_answers_unchecked_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from engage_serving.predictor._review import UNCHECKED
    from engage_serving.protocol import Batch

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    routing = _routing(f"sqlite:///{blocker}/governance.db")  # its folder is a file: never opens
    batch = Batch(np.zeros((3, 2), dtype=np.float32), {"customer_id": ["secret-id-1", None, "secret-id-3"]})
    out = {"churn_probability": [0.5, 0.5, 0.9]}
    with caplog.at_level(logging.INFO, logger="engage_serving.predictor"):
        for _ in range(3):
            routing._retry_at = 0.0  # no back-off: each request tries again
            assert routing.annotate(batch, out) == {0: {"review": UNCHECKED}, 2: {"review": UNCHECKED}}
        assert routing.annotate(Batch(np.zeros((1, 2), dtype=np.float32)), out) == {}  # no ids: nothing
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "governance database unavailable" in warnings[0].getMessage()
    assert "secret-id" not in caplog.text


def test_flush_waits_until_the_writer_has_stored_everything_queued(tmp_path: Path) -> None:
    """A normal stop (SIGTERM) flushes the writer's queue (registered with atexit when it starts)."""
    from engage.governance import ReviewQueue, open_database
    from engage.governance._review import NewReviewItem

    url = f"sqlite:///{tmp_path}/governance.db"
    routing = _routing(url)
    assert routing.flush(0.1)  # nothing queued yet
    for i in range(50):
        routing._enqueue([NewReviewItem(source="edge", reason="near_threshold", customer_id=f"c{i}")])
    assert routing.flush(10.0)
    assert len(ReviewQueue(open_database(url)).list(limit=100)) == 50


def _routing(url: str) -> ReviewRouting:
    """The predictor's review routing on ``url``: a churn threshold of 0.5, a band of 0.05, no outliers."""
    from engage_serving.predictor._review import ReviewRouting

    return ReviewRouting(
        "unit",
        url,
        band=0.05,
        z=6.0,
        thresholds={"churn_probability": 0.5},
        outliers=None,
        encoder=None,
        id_column="customer_id",
        model_version="sha256:x",
    )
