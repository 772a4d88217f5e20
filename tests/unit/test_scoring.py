"""Batch scoring's pieces without a server: the predictor's checks over a table, parts, commits."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import RequestRejected


def _encoder(frame: pd.DataFrame, contract: Any) -> Any:
    from engage.encoding import Encoder
    from engage.features import fit_feature_set

    return Encoder.for_model(fit_feature_set(frame, contract), contract, strict=True)


def _predictor_verdict(encoder: Any, record: dict[str, Any]) -> tuple[str, str] | None:
    """What the predictor says of one row sent alone: None (scored) or (reason, field) of its refusal."""
    try:
        encoder.rows([record])
    except RequestRejected as e:
        return e.reason, e.details[0]["field"]
    return None


def _json_value(v: Any) -> Any:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _spoil(frame: pd.DataFrame) -> pd.DataFrame:
    spoiled = frame.copy()
    spoiled["tenure_days"] = spoiled["tenure_days"].astype("float64")
    spoiled["sessions_30d"] = spoiled["sessions_30d"].astype("float64")
    spoiled.loc[0, "tenure_days"] = np.nan  # null in a non-nullable integer
    spoiled.loc[1, "tenure_days"] = 12.5  # a fraction in an integer column
    spoiled.loc[2, "spend_products_90d"] = np.inf
    spoiled.loc[3, "spend_products_90d"] = 1e39  # past float32
    spoiled.loc[4, "active_days_30d"] = 31  # above max 30
    spoiled.loc[5, "sessions_30d"] = -1  # below min 0
    spoiled["country"] = spoiled["country"].astype(object)
    spoiled.loc[6, "country"] = "XX"  # unknown level
    spoiled.loc[7, "country"] = None  # null, not nullable
    spoiled.loc[8, "avg_session_minutes"] = np.nan  # nullable: fine
    spoiled.loc[9, "discount_share"] = 1.5  # above max 1
    spoiled.loc[10, "tenure_days"] = np.nan  # two problems: the first field's is named
    spoiled.loc[10, "country"] = "XX"
    spoiled["email_opt_in"] = spoiled["email_opt_in"].astype(object)
    spoiled.loc[11, "email_opt_in"] = None
    return spoiled


def test_check_frame_rejects_exactly_the_rows_the_predictor_refuses(clean: Any, contract: Any) -> None:
    """Every row of a spoiled table: scored by the batch checks iff the predictor's encoder takes it
    alone, and refused with the same reason code and field as the predictor's first problem."""
    from engage.scoring import check_frame

    frame = clean.frame.head(200).reset_index(drop=True)
    encoder = _encoder(clean.frame, contract)
    spoiled = _spoil(frame)
    checked = check_frame(spoiled, encoder)
    mine = {int(i): (r[0], r[1]) for i, r in zip(checked.rejected, checked.reasons, strict=True)}
    theirs = {}
    for i, row in enumerate(spoiled[encoder.names].to_dict("records")):
        verdict = _predictor_verdict(encoder, {k: _json_value(v) for k, v in row.items()})
        if verdict is not None:
            theirs[i] = verdict
    assert mine == theirs
    assert set(mine) == {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11}
    assert mine[10] == ("null_not_allowed", "tenure_days")
    # the accepted rows' matrix is what the predictor builds for them (float32)
    accepted = [i for i in range(len(spoiled)) if i not in mine]
    records = [
        {k: _json_value(v) for k, v in r.items()}
        for r in spoiled.iloc[accepted][encoder.names].to_dict("records")
    ]
    expected = encoder.rows(records).astype(np.float32)
    np.testing.assert_array_equal(checked.X, expected)


def test_text_columns_are_checked_value_by_value_as_the_predictor_does(clean: Any, contract: Any) -> None:
    """A CSV-like column of objects (numbers and text mixed) goes through the predictor's own encoder."""
    from engage.scoring import check_frame

    frame = clean.frame.head(20).reset_index(drop=True)
    encoder = _encoder(clean.frame, contract)
    frame["nps_score"] = frame["nps_score"].astype(object)
    frame.loc[3, "nps_score"] = "seven"
    frame.loc[4, "nps_score"] = True
    checked = check_frame(frame, encoder)
    assert [(int(i), r[0], r[1]) for i, r in zip(checked.rejected, checked.reasons, strict=True)] == [
        (3, "wrong_type", "nps_score"),
        (4, "wrong_type", "nps_score"),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.drop(columns=["plan"]), "column 'plan': missing"),
        (lambda f: f.assign(tenure_days=f["tenure_days"].astype(str)), "column 'tenure_days': holds text"),
        (lambda f: f.assign(country=1.0), "column 'country': holds float64 values"),
    ],
)
def test_a_schema_no_row_can_pass_is_named(clean: Any, contract: Any, change: Any, expected: str) -> None:
    from engage.scoring import schema_problem

    encoder = _encoder(clean.frame, contract)
    assert schema_problem(clean.frame.head(5), encoder) is None
    problem = schema_problem(change(clean.frame.head(5).copy()), encoder)
    assert problem is not None
    assert problem.startswith(expected)


def test_parts_follow_row_groups_and_skip_hidden_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engage.scoring import plan_parts

    table = pa.table({"x": list(range(10_000))})
    (tmp_path / "data" / "day=1").mkdir(parents=True)
    pq.write_table(table, tmp_path / "data" / "day=1" / "a.parquet", row_group_size=1_000)
    pq.write_table(table.slice(0, 2_500), tmp_path / "data" / "b.parquet", row_group_size=2_500)
    pq.write_table(table, tmp_path / "data" / "_hidden.parquet")
    (tmp_path / "data" / "_SUCCESS").write_text("")
    parts = plan_parts(str(tmp_path / "data"), partition_rows=3_000)
    assert [(Path(p.path).name, p.rows, p.offset) for p in parts] == [
        ("b.parquet", 2_500, 0),
        ("a.parquet", 3_000, 0),
        ("a.parquet", 3_000, 3_000),
        ("a.parquet", 3_000, 6_000),
        ("a.parquet", 1_000, 9_000),
    ]
    assert [p.index for p in parts] == list(range(5))


def test_a_missing_table_is_a_data_error(tmp_path: Path) -> None:
    from engage.errors import DataError
    from engage.scoring import plan_parts

    with pytest.raises(DataError, match="no such file or folder"):
        plan_parts(str(tmp_path / "nothing"), partition_rows=1_000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holding no Parquet file"):
        plan_parts(str(tmp_path / "empty"), partition_rows=1_000)


def test_a_commit_makes_a_new_partition_appear_whole_and_a_rerun_replace_it(tmp_path: Path) -> None:
    from engage.scoring import Destination

    dest = Destination(str(tmp_path / "out"), date(2026, 12, 7))
    for text in ("first", "second"):
        with dest.local_temp() as tmp:
            (tmp / "f").write_text(text)
            url = dest.commit_file(tmp / "f", dest.scores)
        assert url.endswith("out/run_date=2026-12-07/scores.parquet")
        assert (tmp_path / "out" / "run_date=2026-12-07" / "scores.parquet").read_text() == text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["run_date=2026-12-07"]  # no staging left
