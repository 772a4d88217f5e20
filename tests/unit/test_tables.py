"""Reading, conforming and writing tables: bad files get one clear error; nothing is half-written."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import DataError, SchemaError
from engage.tables import conform, read_table, write_table
from tests.conftest import TELCO_TABLE


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("absent.parquet", None, r"absent\.parquet: no such file"),
        ("t.parquet", b"customer_id\n1\n", r"t\.parquet: not a Parquet file"),
        ("t.csv", b"\xff\xfe\x00\x81binary", r"t\.csv: not a CSV text file"),
        ("t.csv", b"", r"t\.csv: empty CSV file"),
        ("t.csv", b'a,b\n1,"unterminated\n', r"t\.csv: malformed CSV"),
        ("t.xlsx", b"PK\x03\x04", r"t\.xlsx: not a Parquet or CSV file"),
        ("t.parquet", b"PAR1 but then garbage", r"t\.parquet: not a readable Parquet file"),
    ],
)
def test_unreadable_files_are_one_clear_error(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        read_table(path)


def test_a_directory_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path)


def test_csv_values_are_typed_by_the_contract(telco_contract: Any) -> None:
    raw = read_table(TELCO_TABLE)
    assert raw["tenure"].dtype == object  # CSV arrives as text
    table = conform(raw, telco_contract)
    f = table.frame
    assert str(f["tenure"].dtype) == "Int64"
    assert str(f["Churn"].dtype) == "boolean"
    assert str(f["SeniorCitizen"].dtype) == "boolean"  # 0/1 flags
    assert f["TotalCharges"].dtype == np.float64
    assert f["TotalCharges"].isna().sum() == 3  # " " for subscribers in their first month
    assert not table.type_errors
    assert table.extra_columns == ["Region"]
    assert raw["tenure"].dtype == object  # the input is not modified


def test_unreadable_values_are_recorded_not_fatal(telco_contract: Any) -> None:
    raw = read_table(TELCO_TABLE).head(6).copy()
    raw.loc[0, "tenure"] = "twelve"
    raw.loc[1, "tenure"] = "3.5"
    raw.loc[2, "Churn"] = "maybe"
    raw.loc[3, "MonthlyCharges"] = "inf"
    table = conform(raw, telco_contract)
    assert table.type_errors["tenure"].tolist() == [True, True, False, False, False, False]
    assert table.type_errors["Churn"].tolist() == [False, False, True, False, False, False]
    assert table.type_errors["MonthlyCharges"][3]
    assert table.frame["tenure"].isna().sum() == 2


def test_missing_columns_and_empty_tables_cannot_be_checked(telco_contract: Any) -> None:
    raw = read_table(TELCO_TABLE)
    with pytest.raises(SchemaError, match=r"lacks 2 column\(s\) .*telco_customers.*: tenure, Churn"):
        conform(raw.drop(columns=["tenure", "Churn"]), telco_contract)
    with pytest.raises(SchemaError, match="no rows"):
        conform(raw.head(0), telco_contract)


def test_writing_is_reproducible_and_atomic(tmp_path: Path, clean: Any) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_table(clean.frame, a)
    write_table(clean.frame.copy(), b)
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    before = a.read_bytes()
    unwritable = pd.DataFrame({"x": [object(), object()]})
    with pytest.raises(Exception, match="object"):
        write_table(unwritable, a)
    assert a.read_bytes() == before  # the previous version is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]  # no temp file left


def test_parquet_roundtrip_keeps_contract_types(tmp_path: Path, clean: Any, contract: Any) -> None:
    path = write_table(clean.frame, tmp_path / "c.parquet")
    back = conform(read_table(path), contract)
    assert not back.type_errors
    for name in contract.columns:
        assert back.frame[name].dtype == conform(clean.frame, contract).frame[name].dtype, name


def test_the_format_is_read_from_the_content_whatever_the_name(tmp_path: Path) -> None:
    """A table saved without its extension (as a KFP artifact is) reads as what it is."""
    expected = read_table(TELCO_TABLE)
    nameless = tmp_path / "data"
    nameless.write_bytes(TELCO_TABLE.read_bytes())
    pd.testing.assert_frame_equal(read_table(nameless), expected)
    write_table(expected, tmp_path / "as_parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "as_parquet"), expected)
    (tmp_path / "notes").write_text("no delimiter on this line\n")
    with pytest.raises(DataError, match="not a Parquet or CSV file"):
        read_table(tmp_path / "notes")


def test_any_fsspec_uri_reads(tmp_path: Path) -> None:
    import fsspec  # type: ignore[import-untyped]

    fs = fsspec.filesystem("memory")
    fs.pipe("/tables/customers", TELCO_TABLE.read_bytes())  # no extension there either
    pd.testing.assert_frame_equal(read_table("memory:///tables/customers"), read_table(TELCO_TABLE))
    pd.testing.assert_frame_equal(read_table(f"file://{TELCO_TABLE}"), read_table(TELCO_TABLE))
    with pytest.raises(DataError, match=r"memory:///tables/absent\.csv: no such file"):
        read_table("memory:///tables/absent.csv")
