"""The contract loads into typed objects, and every kind of mistake in it gets one precise message."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.contract import (
    ColumnType,
    Role,
    Severity,
    Task,
    default_contract_path,
    load_contract,
    parse_contract,
)
from engage.contract._load import (
    _DUPLICATE_KEY,
    _DUPLICATE_RULE_ID,
    _MISSING_CHECK_KIND,
    _MISSING_KEY,
    _NO_SUCH_COLUMN,
    _NO_SUCH_FILE,
    _NOT_A_MAPPING,
    _NOT_YAML,
    _POSITION,
    _TARGET_WITHOUT_ENTRY,
    _UNKNOWN_CHECK_KIND,
    _UNKNOWN_KEY,
)
from engage.errors import ContractError

SOURCE = default_contract_path().read_text(encoding="utf-8")
BASE: dict[str, Any] = yaml.safe_load(SOURCE)


def test_default_contract_declares_the_issue_rules(contract: Any) -> None:
    ids = [r.id for r in contract.rules]
    assert ids == [f"BR-{i:03d}" for i in range(1, 11)] + [f"ML-{i:03d}" for i in range(1, 7)]
    assert {r.severity for r in contract.rules} == {Severity.critical, Severity.warning}
    assert contract.primary_key == ["customer_id"]
    assert contract.event_time.column == "snapshot_at"
    assert {h: t.task for h, t in contract.targets.items()} == {
        "engagement_score": Task.regression,
        "churn": Task.binary_classification,
        "ltv": Task.regression,
    }


def test_roles_keep_sensitive_columns_out_of_the_features(contract: Any) -> None:
    features = set(contract.features)
    assert features
    for role in (Role.pii, Role.protected, Role.target, Role.id, Role.event_time):
        assert not features & set(contract.by_role(role)), role
    assert set(contract.pii) == {"full_name", "email", "phone"}
    assert set(contract.protected) == {"gender", "age"}
    assert set(contract.critical_features) <= features
    assert contract.columns["age"].bins == [18, 25, 35, 50, 65, 121]
    assert contract.columns["tenure_days"].type is ColumnType.integer


def test_loading_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(SOURCE, encoding="utf-8")
    first = load_contract(path)
    assert load_contract(path) is first
    path.write_text(SOURCE.replace("version: 1.0.0", "version: 1.0.1"), encoding="utf-8")
    import os

    os.utime(path, ns=(1, 10**18))
    assert load_contract(path).version == "1.0.1"


def _problems(mutate: Callable[[dict[str, Any]], None]) -> str:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(ContractError) as info:
        parse_contract(yaml.safe_dump(data, sort_keys=False), source="bad.yml")
    message = str(info.value)
    assert message.startswith("bad.yml: ")
    return message


def _exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``, built from the formatted message constants."""
    return f"^{re.escape(message)}$"


def _rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["id"] == rule_id)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["columns"]["age"].update(colour="red"),
            re.escape(_UNKNOWN_KEY.format(path="columns.age.colour")),
        ),
        (lambda d: d.update(owners="x"), re.escape(_UNKNOWN_KEY.format(path="owners"))),
        (
            lambda d: d["columns"]["age"].update(type="int"),
            r"columns\.age\.type: expected 'string', 'integer', .* \(got 'int'\)",
        ),
        (
            lambda d: d["columns"]["age"].update(nullable="maybe"),
            r"columns\.age\.nullable: expected a valid boolean",
        ),
        (lambda d: d["columns"]["age"].pop("role"), re.escape(_MISSING_KEY.format(path="columns.age.role"))),
        (lambda d: d.pop("primary_key"), re.escape(_MISSING_KEY.format(path="primary_key"))),
        (
            lambda d: _rule(d, "BR-003")["check"].update(columns=["agee"]),
            re.escape(_NO_SUCH_COLUMN.format(path="rules.2.check.columns.0", name="agee")),
        ),
        (
            lambda d: _rule(d, "BR-002")["check"].update(right="last_login"),
            re.escape(_NO_SUCH_COLUMN.format(path="rules.1.check.right", name="last_login")),
        ),
        (
            lambda d: _rule(d, "BR-003")["check"].update(kind="between"),
            re.escape(
                _UNKNOWN_CHECK_KIND.format(
                    path="rules.2.check", tag="between", expected="'unique', 'compare'"
                )
            ),
        ),
        (
            lambda d: _rule(d, "BR-003")["check"].pop("kind"),
            re.escape(_MISSING_CHECK_KIND.format(path="rules.2.check")),
        ),
        (
            lambda d: _rule(d, "BR-003")["check"].update(min=5, max=1),
            r"rules\.2\.check: min \(5\.0\) is greater",
        ),
        (
            lambda d: _rule(d, "BR-004")["check"].update(regex="[a-"),
            r"rules\.3\.check\.regex: not a valid regular",
        ),
        (
            lambda d: _rule(d, "BR-004")["check"].update(column="age"),
            r"rules\.3\.check\.column: expected a string or category column, 'age' is integer",
        ),
        (
            lambda d: _rule(d, "ML-002")["check"].update(target="ltv"),
            r"rules\.11\.check\.target: label balance needs a binary_classification target",
        ),
        (
            lambda d: _rule(d, "BR-002").update(id="BR-001"),
            re.escape(_DUPLICATE_RULE_ID.format(index=1, id="BR-001", first=0)),
        ),
        (
            lambda d: _rule(d, "BR-002").update(severity="fatal"),
            r"rules\.1\.severity: expected 'critical' or 'warning'",
        ),
        (
            lambda d: d["targets"].pop("ltv"),
            re.escape(_TARGET_WITHOUT_ENTRY.format(name="ltv")),
        ),
        (
            lambda d: d["targets"]["ltv"].update(column="lifetime_value"),
            re.escape(_NO_SUCH_COLUMN.format(path="targets.ltv.column", name="lifetime_value")),
        ),
        (
            lambda d: d["targets"]["churn"].pop("positive"),
            r"targets\.churn: a binary_classification target needs `positive`",
        ),
        (
            lambda d: d["targets"].update(age={"column": "age", "task": "regression"}),
            r"targets\.age\.column: expected a column with role target, 'age' has role protected",
        ),
        (
            lambda d: d["event_time"].update(column="signup"),
            re.escape(_NO_SUCH_COLUMN.format(path="event_time.column", name="signup")),
        ),
        (
            lambda d: d["event_time"].update(column="age"),
            r"event_time\.column: expected a date or datetime column, 'age' is integer",
        ),
        (lambda d: d["columns"]["country"].update(min=0), r"columns\.country: min/max need a numeric type"),
        (
            lambda d: d["columns"]["age"].update(bins=[18, 30, 25]),
            r"columns\.age: bins must be strictly increasing",
        ),
        (
            lambda d: d["columns"]["email"].update(critical=True),
            r"columns\.email: critical applies to feature columns",
        ),
        (lambda d: d.update(version="one"), r"version: String should match pattern .* \(got 'one'\)"),
    ],
)
def test_a_broken_contract_names_the_key_path_and_what_was_expected(
    mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    assert re.search(expected, _problems(mutate)), _problems(mutate)


def test_every_problem_is_listed_at_once() -> None:
    def two(d: dict[str, Any]) -> None:
        d["columns"]["age"]["colour"] = "red"
        d["columns"]["plan"]["type"] = "enum"

    message = _problems(two)
    assert "2 problems" in message
    assert "columns.age.colour" in message
    assert "columns.plan.type" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the problem after the position is PyYAML's own text: only the start is ours
        (
            "contract: [unclosed\n",
            "^"
            + re.escape("bad.yml: " + _NOT_YAML.format(where=_POSITION.format(line=2, column=1), problem="")),
        ),
        (
            "contract: a\ncontract: b\n",
            _exactly(
                "bad.yml: "
                + _NOT_YAML.format(
                    where=_POSITION.format(line=2, column=1), problem=_DUPLICATE_KEY.format(key="contract")
                )
            ),
        ),
        ("- a\n- b\n", _exactly("bad.yml: " + _NOT_A_MAPPING.format(got="list"))),
        ("", _exactly("bad.yml: " + _NOT_A_MAPPING.format(got="an empty file"))),
    ],
)
def test_yaml_problems_give_the_position(text: str, expected: str) -> None:
    with pytest.raises(ContractError, match=expected):
        parse_contract(text, source="bad.yml")


def test_a_missing_contract_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=_exactly(f"{tmp_path / 'nope.yml'}: {_NO_SUCH_FILE}")):
        load_contract(tmp_path / "nope.yml")


def test_the_second_contract_has_other_columns_and_only_churn(telco_contract: Any) -> None:
    assert list(telco_contract.targets) == ["churn"]
    assert "customerID" in telco_contract.columns
    assert telco_contract.event_time is None
    assert set(telco_contract.protected) == {"gender", "SeniorCitizen"}
