"""Properties of the parts that read what others send: whatever comes in, the answer is a result or one
named Engage error, never another exception.

* the contract loader (:func:`engage.contract.parse_contract`): arbitrary text, arbitrary YAML, and the
  shipped contract with keys dropped, values swapped and text cut -> a Contract or a ContractError;
* the validator (:func:`engage.quality.validate`, and the encoder's tables): DataFrames with wrong
  types, NaN, infinities, huge strings, missing, extra and repeated columns -> a report or SchemaError;
* the payload parsers (the shared V1 / V2 decoder, the encoder under it, the explainer's and the drift
  detector's request readers): arbitrary JSON -> rows, or a RequestRejected with a 4xx status.

(``tests/unit/test_bad_input.py`` feeds spoiled CSV files to the gate; ``tests/unit/test_encoding.py``
holds valid rows to the same matrix on every path.) Seeded: a failure reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from engage.contract import Contract, default_contract_path, parse_contract
from engage.errors import ContractError, RequestRejected, SchemaError
from tests.unit.test_encoding import CONTRACT, table

pytestmark = pytest.mark.fuzz

SEED = 19


def fuzz(examples: int) -> Callable[[Any], Any]:
    chosen = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    return lambda test: seed(SEED)(chosen(test))


# --- values ------------------------------------------------------------------------------------------------

HUGE_TEXT = "x" * 100_000
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and both infinities included
    | st.text(max_size=12)
    | st.sampled_from([10**400, -(10**400), 1e300, -1e300, 3.5e38, HUGE_TEXT, "", " ", "NaN", "1e309"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)


# --- the contract loader -----------------------------------------------------------------------------------

SHIPPED = default_contract_path().read_text(encoding="utf-8")
SHIPPED_DATA = yaml.safe_load(SHIPPED)


def loads_or_names_the_problem(text: str) -> None:
    """A Contract, or a ContractError naming the source and at least one problem."""
    error: ContractError | None = None
    try:
        result = parse_contract(text, "fuzz.yml")
    except ContractError as e:
        error = e
    if error is not None:
        assert error.message.startswith("fuzz.yml: ")
        assert error.problems
        assert all(isinstance(p, str) and p for p in error.problems)
        return
    assert isinstance(result, Contract)


@fuzz(300)
@given(text=st.text())
@example(text="[" * 5_000)  # nesting past Python's recursion limit
@example(text="{a: " * 3_000)
@example(text="? [a, b]\n: 1\n")  # a mapping key that is a list
@example(text="? {a: 1}\n: 1\n")
@example(text="a: &x [1]\nb: *x\n")
@example(text="!!python/object/apply:os.system [echo]")
def test_any_text_is_a_contract_or_a_contract_error(text: str) -> None:
    loads_or_names_the_problem(text)


YAML_KEYS = st.text(max_size=10) | st.integers() | st.booleans() | st.none() | st.dates()
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.dates(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(YAML_KEYS, inner, max_size=4),
    max_leaves=20,
)


@fuzz(200)
@given(data=YAML_VALUES)
def test_any_yaml_document_is_a_contract_or_a_contract_error(data: Any) -> None:
    loads_or_names_the_problem(yaml.safe_dump(data, allow_unicode=True))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        out += _paths(child, (*prefix, key))
    return out


SHIPPED_PATHS = _paths(SHIPPED_DATA)


@st.composite
def near_valid_contracts(draw: st.DrawFn) -> str:
    """The shipped contract with a few keys dropped, values replaced or keys added."""
    import copy

    data = copy.deepcopy(SHIPPED_DATA)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(SHIPPED_PATHS))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            what = draw(st.sampled_from(["drop", "replace", "add"]))
            if what == "drop":
                del parent[path[-1]]
            elif what == "replace":
                parent[path[-1]] = draw(YAML_VALUES)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=8))] = draw(YAML_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the path
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@fuzz(80)
@given(text=near_valid_contracts())
def test_a_near_valid_contract_is_a_contract_or_names_its_problems(text: str) -> None:
    loads_or_names_the_problem(text)


SHIPPED_LINES = SHIPPED.splitlines()


@fuzz(60)
@given(
    cuts=st.lists(st.integers(0, len(SHIPPED_LINES) - 1), max_size=4),
    copies=st.lists(st.integers(0, len(SHIPPED_LINES) - 1), max_size=2),
    truncate=st.none() | st.integers(0, len(SHIPPED)),
)
def test_a_cut_or_repeated_contract_file_is_a_contract_or_names_its_problems(
    cuts: list[int], copies: list[int], truncate: int | None
) -> None:
    lines = list(SHIPPED_LINES)
    for i in copies:
        lines.insert(i, SHIPPED_LINES[i])  # a repeated key, as a bad merge leaves it
    lines = [line for i, line in enumerate(lines) if i not in set(cuts)]
    text = "\n".join(lines)
    loads_or_names_the_problem(text[:truncate] if truncate is not None else text)


# --- the validator -----------------------------------------------------------------------------------------

ODD_CELLS = SCALARS | st.sampled_from([pd.NA, pd.NaT, math.inf, -math.inf, np.nan, [1, 2], {"a": 1}, b"\xff"])


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    from datetime import UTC, datetime

    from engage.synthetic import SyntheticConfig, generate_customers

    as_of = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    return generate_customers(SyntheticConfig(rows=8, seed=5, as_of=as_of)).frame


@pytest.fixture(scope="module")
def customer_contract() -> Contract:
    from engage.contract import load_contract

    return load_contract()


@st.composite
def spoiled_frames(draw: st.DrawFn, frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.head(draw(st.integers(0, len(frame)))).astype(object).copy()
    columns = list(out.columns)
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(columns))
        if name not in out.columns or not len(out):
            continue
        out.iat[draw(st.integers(0, len(out) - 1)), list(out.columns).index(name)] = draw(ODD_CELLS)
    for name in draw(st.lists(st.sampled_from(columns), max_size=2, unique=True)):
        if draw(st.booleans()):
            out = out.drop(columns=name)
        else:
            value = draw(ODD_CELLS)
            out[name] = pd.Series([value] * len(out), index=out.index, dtype=object)  # in every row
    if draw(st.booleans()):
        value = draw(ODD_CELLS)
        out[draw(st.text(max_size=6))] = pd.Series([value] * len(out), index=out.index, dtype=object)
    if draw(st.integers(0, 9)) == 0 and len(out.columns):
        twice = draw(st.sampled_from(list(out.columns)))
        out = pd.concat([out, out[[twice]]], axis=1)  # a repeated column name
    return out


@fuzz(120)
@given(data=st.data())
def test_any_table_gets_a_report_or_a_schema_error(
    customers: pd.DataFrame, customer_contract: Contract, data: Any
) -> None:
    from datetime import UTC, datetime

    from engage.quality import validate

    frame = data.draw(spoiled_frames(customers))
    error: SchemaError | None = None
    try:
        result = validate(frame, customer_contract, now=datetime(2026, 3, 1, 7, tzinfo=UTC))
    except SchemaError as e:
        error = e
    if error is not None:
        assert error.message
        assert "\n" not in error.message
        return
    assert result.report.rows == len(frame)
    assert all(r.message for r in result.report.results)


#: past the encoder's columnar (32 rows) and pandas (64 rows) paths
TABLE = table(70, seed=4)


@pytest.fixture(scope="module")
def every_type() -> tuple[Contract, Any]:
    from engage.features import fit_feature_set

    contract = parse_contract(CONTRACT, "every_type.yml")
    return contract, fit_feature_set(table(60, seed=3), contract)


@fuzz(150)
@given(data=st.data())
def test_the_encoder_reads_any_table_or_names_a_schema_error(
    every_type: tuple[Contract, Any], data: Any
) -> None:
    from engage.encoding import Encoder

    contract, features = every_type
    frame = data.draw(spoiled_frames(TABLE))
    for strict in (False, True):
        encoder = Encoder.for_model(features, contract, strict=strict)
        error: SchemaError | None = None
        try:
            X = encoder.frame(frame)
        except SchemaError as e:
            error = e
        if error is not None:
            assert error.message
            continue
        assert X.shape == (len(frame), encoder.width)
        assert not np.isinf(X).any()


# --- the payload parsers -----------------------------------------------------------------------------------


def refused_with_4xx(call: Callable[[], Any]) -> Any:
    """The call's result, or None when it refused with a RequestRejected of a 4xx status naming why."""
    error: RequestRejected | None = None
    try:
        return call()
    except RequestRejected as e:
        error = e
    assert 400 <= error.http_status < 500, error
    assert error.message
    assert error.reason
    for detail in error.details:
        assert set(detail) <= {"row", "field", "error"}
        assert detail["error"]
    return None


@pytest.fixture(scope="module")
def decoders(every_type: tuple[Contract, Any]) -> dict[str, Any]:
    from engage.encoding import Encoder
    from engage_serving.protocol import Decoder

    contract, features = every_type
    return {
        "strict": Decoder(Encoder.for_model(features, contract, strict=True), contract, max_rows=50),
        "lenient": Decoder(Encoder.for_model(features, contract), contract, max_rows=50),
    }


ROW_VALUES = {
    "visits": st.integers(0, 100),
    "spend": st.floats(0, 1e6),
    "share": st.floats(0, 1),
    "opted_in": st.booleans(),
    "plan": st.sampled_from(["free", "basic", "premium"]),
    "city": st.sampled_from(["Oslo", "Lima", "Pune"]),
}


@st.composite
def near_valid_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = {name: draw(values) for name, values in ROW_VALUES.items()}
    for name in draw(st.lists(st.sampled_from([*ROW_VALUES, "id", "group", "other"]), max_size=3)):
        if draw(st.booleans()) and name in row:
            del row[name]
        else:
            row[name] = draw(JSON)
    return row


def tensor(draw: st.DrawFn) -> Any:
    name = draw(st.sampled_from([*ROW_VALUES, "input-0", "x"]))
    data = draw(st.lists(SCALARS, max_size=6))
    shape = draw(st.sampled_from([[len(data)], [len(data), 1], [1, len(data)], [2, 3], [-1], [len(data), 6]]))
    datatype = draw(st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "nope"]))
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


V1 = st.builds(lambda rows: {"instances": rows}, st.lists(near_valid_rows() | JSON, max_size=4))
V2 = st.builds(lambda tensors: {"inputs": tensors}, st.lists(st.composite(tensor)(), max_size=7))
PAYLOADS = JSON | V1 | V2 | st.lists(near_valid_rows(), max_size=3)


@fuzz(400)
@given(payload=PAYLOADS)
def test_any_payload_is_rows_or_a_4xx(decoders: dict[str, Any], payload: Any) -> None:
    for decoder in decoders.values():
        batch = refused_with_4xx(lambda d=decoder: d.any(payload))
        if batch is not None:
            assert batch.X.shape == (batch.rows, len(decoder.names))
            assert not np.isinf(batch.X).any()  # float32: nothing that overflows gets through


@fuzz(200)
@given(
    payload=JSON
    | st.builds(lambda p: {"predictions": p}, st.lists(JSON, max_size=3))
    | st.builds(lambda o: {"outputs": o}, st.lists(st.composite(tensor)(), max_size=3))
)
def test_any_predictor_answer_is_predictions_or_a_4xx(payload: Any) -> None:
    from engage_serving.protocol import predictions

    out = refused_with_4xx(lambda: predictions(payload, ["visits", "plan", "churn_probability"]))
    if out is not None:
        assert all(isinstance(v, float) for values in out.values() for v in values)


@fuzz(200)
@given(
    payload=JSON
    | st.binary(max_size=40)
    | st.fixed_dictionaries(
        {"instances": st.lists(near_valid_rows(), max_size=3)},
        optional={"method": JSON, "head": JSON, "desired": JSON},
    )
)
def test_any_explain_request_is_parsed_or_a_4xx(payload: Any) -> None:
    from engage_serving.explainer._model import parse_request

    refused_with_4xx(lambda: parse_request(payload, max_rows=50))


@fuzz(200)
@given(
    body=st.binary(max_size=60) | JSON.map(lambda v: __import__("json").dumps(v).encode()),
    kind=st.sampled_from(
        [
            None,
            "org.kubeflow.serving.inference.request",
            "org.kubeflow.serving.inference.response",
            "other",
        ]
    ),
    structured=st.booleans(),
)
def test_any_drift_event_is_parsed_or_a_4xx(body: bytes, kind: str | None, structured: bool) -> None:
    from engage_serving.drift_detector._model import parse_event

    headers = {"content-type": "application/cloudevents+json" if structured else "application/json"}
    if kind is not None and not structured:
        headers["ce-type"] = kind
    refused_with_4xx(lambda: parse_event(body, headers))


def test_an_integer_beyond_any_float_is_refused_by_name(decoders: dict[str, Any]) -> None:
    for decoder in decoders.values():
        row = {"visits": 3, "spend": 10**400, "share": 0.5, "opted_in": True, "plan": "free", "city": "Oslo"}
        with pytest.raises(RequestRejected) as refused:
            decoder.v1({"instances": [row] * 40})  # past the columnar fast path (32 rows) too
        assert refused.value.http_status == 422
        assert refused.value.reason == "not_finite"
        assert refused.value.details[0]["field"] == "spend"


@pytest.mark.parametrize("value", [1e300, -3.5e38, 10**39])
def test_a_number_infinite_in_float32_is_refused_not_infinity_in_the_model(
    decoders: dict[str, Any], value: float
) -> None:
    row = {"visits": 3, "spend": value, "share": 0.5, "opted_in": True, "plan": "free", "city": "Oslo"}
    for decoder in decoders.values():
        for rows in ([row], [row] * 40):
            with pytest.raises(RequestRejected, match="the models compute in float32") as refused:
                decoder.v1({"instances": rows})
            assert refused.value.reason == "not_finite"


def test_a_table_with_a_number_infinite_in_float32_is_a_schema_error(
    every_type: tuple[Contract, Any],
) -> None:
    from engage.encoding import BEYOND_FLOAT32, Encoder

    contract, features = every_type
    frame = table(70, seed=4)
    frame.loc[3, "spend"] = 1e300
    for strict in (False, True):
        with pytest.raises(SchemaError, match="float32"):
            Encoder.for_model(features, contract, strict=strict).frame(frame)
    assert "3.4e38" in BEYOND_FLOAT32


# --- regressions: what the properties above found ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 5_000, "not valid YAML: nested too deeply"),
        ("? [a, b]\n: 1\n", "a key must be a plain value (text, a number), not a list"),
        ("? {a: 1}\n: 1\n", "a key must be a plain value (text, a number), not a mapping"),
    ],
)
def test_yaml_no_contract_can_be_is_one_contract_error(text: str, problem: str) -> None:
    with pytest.raises(ContractError) as refused:
        parse_contract(text, "odd.yml")
    assert len(refused.value.problems) == 1
    assert problem in refused.value.problems[0]


def _validated(customers: pd.DataFrame, contract: Contract, column: str, value: Any) -> Any:
    from datetime import UTC, datetime

    from engage.quality import validate

    frame = customers.astype(object)
    frame.iat[1, list(frame.columns).index(column)] = value
    return validate(frame, contract, now=datetime(2026, 3, 1, 7, tzinfo=UTC))


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [
        ("age", 1e300, "'1e+300'"),  # a whole number past int64: was a TypeError casting to Int64
        ("age", [1, 2], "'[1, 2]'"),  # a Parquet list cell: was "unhashable type: 'list'"
        ("tenure_days", {"a": 1}, "\"{'a': 1}\""),
        ("sessions_30d", b"\xff", "xff"),  # binary, not UTF-8: was a UnicodeDecodeError
    ],
)
def test_a_cell_no_column_type_can_read_is_a_type_failure(
    customers: pd.DataFrame, customer_contract: Contract, column: str, value: Any, shown: str
) -> None:
    result = _validated(customers, customer_contract, column, value)
    check = next(r for r in result.report.results if r.id == f"schema.{column}.type")
    assert not check.passed
    assert check.failing_rows == 1
    assert shown in check.message


def test_a_huge_number_beside_a_protected_attribute_does_not_overflow(
    customers: pd.DataFrame, customer_contract: Contract
) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning, as the proxy check squared 1e300
        result = _validated(customers, customer_contract, "total_spend_90d", 1e300)
    assert all(np.isfinite(r.observed) for r in result.report.results if isinstance(r.observed, float))


def test_a_repeated_column_is_a_schema_error(customers: pd.DataFrame, customer_contract: Contract) -> None:
    from engage.encoding import Encoder
    from engage.features import fit_feature_set
    from engage.quality import validate

    twice = pd.concat([customers, customers[["age"]]], axis=1)
    with pytest.raises(SchemaError, match="table repeats column"):
        validate(twice, customer_contract)
    contract = parse_contract(CONTRACT, "every_type.yml")
    features = fit_feature_set(TABLE, contract)
    with pytest.raises(SchemaError, match="more than once"):
        Encoder.for_model(features, contract).frame(pd.concat([TABLE, TABLE[["visits"]]], axis=1))
