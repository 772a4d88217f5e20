"""Whatever bytes arrive as a table, the gate answers with a report or one named Engage error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.errors import EngageError
from engage.quality import validate
from engage.tables import read_table
from tests.conftest import TELCO_TABLE

HEADER = TELCO_TABLE.read_text().splitlines()[0]
LINES = TELCO_TABLE.read_text().splitlines()[1:40]

cell = st.one_of(
    st.sampled_from(
        ["", " ", "NaN", "nan", "inf", "-1", "1e309", "Yes", "No", "0", "1", "null", "é", '"', "2026-13-45"]
    ),
    st.text(max_size=8),
)


@st.composite
def tables(draw: st.DrawFn) -> str:
    rows = [line.split(",") for line in draw(st.lists(st.sampled_from(LINES), min_size=0, max_size=6))]
    for row in rows:
        for _ in range(draw(st.integers(0, 3))):
            row[draw(st.integers(0, len(row) - 1))] = draw(cell)
        if draw(st.booleans()) and draw(st.booleans()):
            row.append(draw(cell))  # a ragged row now and then
    header = HEADER.split(",")
    if draw(st.booleans()) and draw(st.booleans()):
        header.pop(draw(st.integers(0, len(header) - 1)))  # a missing column now and then
    return "\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=tables())
def test_spoiled_csv_gives_a_report_or_an_engage_error(
    tmp_path: Path, telco_contract: Any, text: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    error: EngageError | None = None
    try:
        result = validate(read_table(path), telco_contract)
    except EngageError as e:
        error = e
    if error is not None:
        message = str(error)
        assert message.strip()
        assert "\n" not in message
        return
    assert result.report.rows >= 1
    assert all(r.message for r in result.report.results)
