"""Load a contract file into a :class:`~engage.contract.Contract`, or say precisely what is wrong.

Three layers of checks, each reporting ``<file>: <key.path>: <what was expected>``:

1. YAML syntax (with line and column) and duplicate keys, which plain YAML loaders silently accept;
2. the schema of each part (pydantic): unknown keys, wrong types, values out of their domain;
3. references between parts: a rule, key or target naming a column that does not exist or has the
   wrong type, a target column without a target definition, a repeated rule id.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engage._io import shipped_file
from engage.errors import ContractError

from ._model import (
    ColumnType,
    CompareCheck,
    Contract,
    CountryCodeCheck,
    FreshnessCheck,
    LabelBalanceCheck,
    PatternCheck,
    RangeCheck,
    Role,
    SumEqualsCheck,
    Task,
)

__all__ = ["DEFAULT_CONTRACT", "default_contract_path", "describe_error", "load_contract", "parse_contract"]

# problems of a contract file as a whole (formatted where they are raised; the tests match on them)
_NO_SUCH_FILE = "no such file"
_UNREADABLE = "cannot be read: {error}"
#: ``where`` is empty or :data:`_POSITION` formatted
_NOT_YAML = "{where}not valid YAML: {problem}"
_POSITION = "line {line}, column {column}: "
_DUPLICATE_KEY = "duplicate key {key!r}"
_UNHASHABLE_KEY = "a key must be a plain value (text, a number), not a {kind}"
_TOO_DEEP = "not valid YAML: nested too deeply"
_NOT_A_MAPPING = "(top level): expected a mapping of contract keys, got {got}"
# problems of one key (``path`` is its dotted key path, as ``columns.age.role``)
_UNKNOWN_KEY = "{path}: unknown key (not part of the contract schema, see docs/contract.md)"
_MISSING_KEY = "{path}: required key is missing"
_UNKNOWN_CHECK_KIND = "{path}.kind: unknown check kind {tag!r}; expected one of {expected}"
_MISSING_CHECK_KIND = "{path}.kind: required key is missing (the check's kind)"
_NO_SUCH_COLUMN = "{path}: no column named {name!r} in columns"
_DUPLICATE_RULE_ID = "rules.{index}.id: rule id {id!r} is already used by rules.{first}"
_TARGET_WITHOUT_ENTRY = "columns.{name}.role: column is a target but no entry in targets defines it"
#: ``columns`` lists the protected columns, quoted
_FAIRNESS_CONTRADICTED = (
    "fairness.applicable: false contradicts the protected column(s) {columns}: a contract that declares "
    "protected attributes is measured on them (drop the fairness section, or the columns' role protected)"
)

DEFAULT_CONTRACT = "customers_contract.yml"


def default_contract_path() -> Path:
    """The customer contract shipped with Engage (``contracts/customers_contract.yml``)."""
    return shipped_file("contracts", DEFAULT_CONTRACT)


def load_contract(path: str | Path | None = None) -> Contract:
    """Read and check a contract file; ``None`` loads the default customer contract.

    Raises :class:`~engage.errors.ContractError` naming the file, the key path and what was expected.
    """
    file = Path(path) if path is not None else default_contract_path()
    return _load_cached(file.resolve(), file.stat().st_mtime_ns if file.is_file() else -1, str(file))


@cache
def _load_cached(resolved: Path, _mtime: int, shown: str) -> Contract:
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(shown, [_NO_SUCH_FILE]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ContractError(shown, [_UNREADABLE.format(error=e)]) from e
    return parse_contract(text, source=shown)


def parse_contract(text: str, source: str = "<contract>") -> Contract:
    """Check a contract given as YAML text (``source`` names it in error messages)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # nosec B506 # _StrictLoader is a yaml.SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = _POSITION.format(line=mark.line + 1, column=mark.column + 1) if mark is not None else ""
        raise ContractError(source, [_NOT_YAML.format(where=where, problem=e.problem)]) from None
    except yaml.YAMLError as e:
        raise ContractError(source, [_NOT_YAML.format(where="", problem=e)]) from None
    except RecursionError:  # PyYAML composes nested nodes recursively: thousands of "[" exhaust it
        raise ContractError(source, [_TOO_DEEP]) from None
    if not isinstance(data, dict):
        got = type(data).__name__ if data is not None else "an empty file"
        raise ContractError(source, [_NOT_A_MAPPING.format(got=got)])
    try:
        contract = Contract.model_validate(data)
    except ValidationError as e:
        raise ContractError(source, [describe_error(err) for err in e.errors()]) from None
    problems = list(_reference_problems(contract))
    if problems:
        raise ContractError(source, problems)
    return contract


# ---- YAML: a safe loader that refuses duplicate keys --------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            hash(key)
        except TypeError:  # "? [a, b]": a complex key, which no contract key is
            kind = "list" if isinstance(key, list) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, _UNHASHABLE_KEY.format(kind=kind), key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, _DUPLICATE_KEY.format(key=key), key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_mapping(node))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,
)


# ---- pydantic errors as one line each ------------------------------------------------------------

_CHECK_TAGS = re.compile(r"^[a-z_]+$")


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        # pydantic puts the discriminator's value in the path of a tagged union ("check.range.min")
        if i > 0 and loc[i - 1] == "check" and isinstance(part, str) and _CHECK_TAGS.match(part):
            continue
        parts.append(str(part))
    return ".".join(parts) or "(top level)"


def describe_error(err: Any) -> str:
    """One pydantic error as ``key.path: what was expected`` (shared by every YAML file Engage reads)."""
    kind = err["type"]
    path = _path(tuple(err["loc"]))
    msg: str = err["msg"]
    got = err.get("input")
    if kind == "extra_forbidden":
        return _UNKNOWN_KEY.format(path=path)
    if kind == "missing":
        return _MISSING_KEY.format(path=path)
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return _UNKNOWN_CHECK_KIND.format(path=path, tag=err["ctx"]["tag"], expected=expected)
    if kind == "union_tag_not_found":
        return _MISSING_CHECK_KIND.format(path=path)
    if msg.startswith("Value error, "):
        return f"{path}: {msg.removeprefix('Value error, ')}"
    if msg.startswith("Input should be "):
        return f"{path}: expected {msg.removeprefix('Input should be ')} (got {got!r})"
    return f"{path}: {msg} (got {got!r})"


# ---- references between parts ---------------------------------------------------------------------


def _reference_problems(c: Contract) -> Iterator[str]:
    cols = c.columns

    def missing(path: str, name: str) -> str:
        return _NO_SUCH_COLUMN.format(path=path, name=name)

    for i, key in enumerate(c.primary_key):
        if key not in cols:
            yield missing(f"primary_key.{i}", key)

    if c.event_time is not None:
        et = c.event_time.column
        if et not in cols:
            yield missing("event_time.column", et)
        elif not cols[et].type.is_temporal:
            yield f"event_time.column: expected a date or datetime column, {et!r} is {cols[et].type.value}"

    if c.cohort is not None:
        if c.cohort not in cols:
            yield missing("cohort", c.cohort)
        elif not (cols[c.cohort].type.is_temporal or cols[c.cohort].type.is_numeric):
            yield f"cohort: expected a date, datetime or numeric column, {c.cohort!r} is {cols[c.cohort].type.value}"

    if c.last_active is not None:
        if c.last_active not in cols:
            yield missing("last_active", c.last_active)
        elif not (cols[c.last_active].type.is_temporal or cols[c.last_active].type.is_numeric):
            yield (
                "last_active: expected a date, datetime or numeric (days since) column, "
                f"{c.last_active!r} is {cols[c.last_active].type.value}"
            )

    used_targets: set[str] = set()
    for head, target in c.targets.items():
        path = f"targets.{head}.column"
        if target.column not in cols:
            yield missing(path, target.column)
            continue
        used_targets.add(target.column)
        col = cols[target.column]
        if col.role is not Role.target:
            yield f"{path}: expected a column with role target, {target.column!r} has role {col.role.value}"
        if target.task is Task.regression and not col.type.is_numeric:
            yield f"{path}: a regression target needs a numeric column, {target.column!r} is {col.type.value}"
    for name, col in cols.items():
        if col.role is Role.target and name not in used_targets:
            yield _TARGET_WITHOUT_ENTRY.format(name=name)

    if not c.fairness.applicable and c.protected:
        yield _FAIRNESS_CONTRADICTED.format(columns=", ".join(repr(p) for p in c.protected))

    for name, col in cols.items():
        if col.cap and c.bounds(name) == (None, None):
            yield f"columns.{name}.cap: no bounds to cap at (declare min / max or a range rule on {name!r})"

    seen_ids: dict[str, int] = {}
    for i, rule in enumerate(c.rules):
        if rule.id in seen_ids:
            yield _DUPLICATE_RULE_ID.format(index=i, id=rule.id, first=seen_ids[rule.id])
        seen_ids.setdefault(rule.id, i)
        yield from _check_problems(c, f"rules.{i}.check", rule.check)


def _check_problems(c: Contract, path: str, check: Any) -> Iterator[str]:
    cols = c.columns
    bad = False
    for field, name in check.columns_referenced():
        if name not in cols:
            bad = True
            yield _NO_SUCH_COLUMN.format(path=f"{path}.{field}", name=name)
    if bad:
        return

    def need(names: list[str], ok: tuple[ColumnType, ...], field: str, what: str) -> Iterator[str]:
        for i, name in enumerate(names):
            if cols[name].type not in ok:
                where = f"{path}.{field}.{i}" if len(names) > 1 or field.endswith("s") else f"{path}.{field}"
                yield f"{where}: expected {what} column, {name!r} is {cols[name].type.value}"

    numeric = (ColumnType.integer, ColumnType.float)
    text = (ColumnType.string, ColumnType.category)
    if isinstance(check, RangeCheck):
        yield from need(check.columns, numeric, "columns", "a numeric")
    elif isinstance(check, SumEqualsCheck):
        yield from need([check.total], numeric, "total", "a numeric")
        yield from need(check.parts, numeric, "parts", "a numeric")
    elif isinstance(check, PatternCheck | CountryCodeCheck):
        yield from need([check.column], text, "column", "a string or category")
    elif isinstance(check, CompareCheck):
        left, right = cols[check.left].type, cols[check.right].type
        if not (left == right or (left.is_numeric and right.is_numeric)) and not (
            left.is_temporal and right.is_temporal
        ):
            yield f"{path}.right: cannot compare {left.value} column {check.left!r} with {right.value} column {check.right!r}"
    elif isinstance(check, FreshnessCheck):
        column = check.column or (c.event_time.column if c.event_time else None)
        if column is None:
            yield f"{path}.column: required when the contract has no event_time"
        elif column in cols and not cols[column].type.is_temporal:
            yield f"{path}.column: expected a date or datetime column, {column!r} is {cols[column].type.value}"
        if check.max_age_hours is None and c.event_time is None:
            yield f"{path}.max_age_hours: required when the contract has no event_time"
    elif isinstance(check, LabelBalanceCheck):
        target = c.targets.get(check.target)
        if target is None:
            yield f"{path}.target: no target named {check.target!r} in targets (have: {', '.join(c.targets) or 'none'})"
        elif target.task is not Task.binary_classification:
            yield f"{path}.target: label balance needs a binary_classification target, {check.target!r} is {target.task.value}"
        if check.min > check.max:
            yield f"{path}.min: min ({check.min}) is greater than max ({check.max})"
