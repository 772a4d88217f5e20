"""The Great Expectations side of the gate: a suite generated from the contract, run by a checkpoint.

:func:`expectations_for` turns every check GX can express into expectations (each tagged with the
check id in ``meta``); nothing is written by hand beside the contract. :func:`run_suite` validates a
conformed table through an ephemeral GX context and checkpoint and, when asked, keeps GX's Data Docs
site. Checks GX cannot express (sums across columns, freshness against "now", label balance, leakage,
prohibited features, proxies, unreadable values) stay with :mod:`engage.quality._checks`.

The checkpoint keeps counts only (``partial_unexpected_count: 0``), so no value of any row, personal
or not, reaches GX's results or Data Docs. GX's usage statistics are turned off before it is imported.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engage._io import replace_dir, staging_dir
from engage.contract import Contract
from engage.contract._model import (
    CompareCheck,
    CountryCodeCheck,
    InSetCheck,
    NullRateCheck,
    PatternCheck,
    RangeCheck,
    UniqueCheck,
    ZeroVarianceCheck,
)

from ._checks import country_codes

__all__ = ["GxOutcome", "expectations_for", "gx_check_ids", "run_suite"]


@dataclass(frozen=True)
class GxOutcome:
    """GX's verdict on one check (all its expectations together)."""

    success: bool
    expectations: int
    unexpected: int  # values GX counted as unexpected, summed over the check's expectations


def _gx() -> tuple[Any, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    with warnings.catch_warnings():
        # GX 1.x imports deprecated stdlib modules (sre_constants) and warns on import
        warnings.simplefilter("ignore")
        import great_expectations as gx
        import great_expectations.expectations as gxe
    return gx, gxe


def expectations_for(contract: Contract) -> list[tuple[str, Any]]:
    """``(check id, expectation)`` for every check of ``contract`` that GX can express."""
    _, gxe = _gx()
    out: list[tuple[str, Any]] = []

    def add(check_id: str, cls: Any, columns: list[str], **kwargs: Any) -> None:
        out.append((check_id, cls(**kwargs, meta={"check_id": check_id})))

    for name, col in contract.columns.items():
        if not col.nullable:
            # empty means empty in the source: a value that could not be read as the type is the type
            # check's finding, not an empty cell (Engage's own check counts the same rows)
            add(
                f"schema.{name}.not_null", gxe.ExpectColumnValuesToNotBeNull, [name], column=name,
                row_condition=_readable(name),
            )  # fmt: skip
        if col.min is not None or col.max is not None:
            add(
                f"schema.{name}.bounds",
                gxe.ExpectColumnValuesToBeBetween,
                [name],
                column=name,
                min_value=col.min,
                max_value=col.max,
            )
        if col.categories is not None:
            add(
                f"schema.{name}.categories",
                gxe.ExpectColumnValuesToBeInSet,
                [name],
                column=name,
                value_set=list(col.categories),
            )

    for rule in contract.rules:
        c = rule.check
        rid = rule.id
        if isinstance(c, UniqueCheck):
            if len(c.columns) == 1:
                add(rid, gxe.ExpectColumnValuesToBeUnique, c.columns, column=c.columns[0])
            else:
                add(rid, gxe.ExpectCompoundColumnsToBeUnique, c.columns, column_list=c.columns)
        elif isinstance(c, CompareCheck) and c.op != "!=":
            cols = [c.left, c.right]
            if c.op == "==":
                add(rid, gxe.ExpectColumnPairValuesToBeEqual, cols, column_A=c.left, column_B=c.right)
            else:
                greater, smaller = (c.left, c.right) if c.op in (">", ">=") else (c.right, c.left)
                add(
                    rid,
                    gxe.ExpectColumnPairValuesAToBeGreaterThanB,
                    cols,
                    column_A=greater,
                    column_B=smaller,
                    or_equal=c.op in (">=", "<="),
                    ignore_row_if="either_value_is_missing",
                )
        elif isinstance(c, RangeCheck):
            for column in c.columns:
                add(
                    rid,
                    gxe.ExpectColumnValuesToBeBetween,
                    [column],
                    column=column,
                    min_value=c.min,
                    max_value=c.max,
                )
        elif isinstance(c, PatternCheck):
            add(
                rid, gxe.ExpectColumnValuesToMatchRegex, [c.column], column=c.column, regex=f"^(?:{c.regex})$"
            )
        elif isinstance(c, InSetCheck):
            add(rid, gxe.ExpectColumnValuesToBeInSet, [c.column], column=c.column, value_set=list(c.values))
        elif isinstance(c, CountryCodeCheck):
            codes = sorted(country_codes(c.standard))
            add(rid, gxe.ExpectColumnValuesToBeInSet, [c.column], column=c.column, value_set=codes)
        elif isinstance(c, NullRateCheck):
            columns = c.columns if c.columns is not None else contract.critical_features
            for column in columns:
                add(
                    rid,
                    gxe.ExpectColumnValuesToNotBeNull,
                    [column],
                    column=column,
                    mostly=max(1.0 - c.max, 1e-9),
                )
        elif isinstance(c, ZeroVarianceCheck):
            columns = c.columns if c.columns is not None else contract.features
            for column in columns:
                if contract.columns[column].type.is_numeric:  # a spread, cheaper than counting values
                    add(
                        rid,
                        gxe.ExpectColumnStdevToBeBetween,
                        [column],
                        column=column,
                        min_value=0,
                        strict_min=True,
                    )
                else:
                    add(
                        rid, gxe.ExpectColumnUniqueValueCountToBeBetween, [column], column=column, min_value=2
                    )
    return out


def _readable(name: str) -> Any:
    from great_expectations.expectations.row_conditions import Column as GxColumn

    return GxColumn(f"{READABLE}{name}") == True  # noqa: E712  (a GX condition object, not a comparison)


#: prefix of the helper columns that say which rows of a column were readable as its type
READABLE = "__engage_readable__"


def gx_check_ids(contract: Contract) -> set[str]:
    return {check_id for check_id, _ in expectations_for(contract)}


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """GX's pandas metrics work on plain numpy columns: nullable integers become floats (NaN for
    empty), text, categories and nullable booleans become objects (None for empty)."""
    out = {}
    for name in frame.columns:
        s = frame[name]
        dtype = s.dtype
        if pd.api.types.is_integer_dtype(dtype) and pd.api.types.is_extension_array_dtype(dtype):
            out[name] = s.astype("float64")
        elif (
            isinstance(dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(dtype)
            or (pd.api.types.is_bool_dtype(dtype) and pd.api.types.is_extension_array_dtype(dtype))
        ):
            values = s.astype("object")
            out[name] = values.mask(values.isna(), None)
        else:
            out[name] = s
    return pd.DataFrame(out)


def run_suite(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    docs_dir: Path | None = None,
    unreadable: Mapping[str, Any] | None = None,
) -> dict[str, GxOutcome]:
    """Validate ``frame`` (conformed) with the generated suite; returns GX's verdict per check id.
    ``unreadable``: per column, the rows whose value could not be read as its type (``conform``'s
    ``type_errors``); the not-null checks leave them to the type check.

    With ``docs_dir`` the Data Docs site is copied there (complete or not at all).
    """
    gx, _ = _gx()
    pairs = expectations_for(contract)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    batch = (
        context.data_sources.add_pandas("engage")
        .add_dataframe_asset(contract.contract)
        .add_batch_definition_whole_dataframe("whole_table")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{contract.contract}_{contract.version}"))
    for _, expectation in pairs:
        suite.expectations.append(expectation)
    suite.save()
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{contract.contract}_contract", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="engage_quality_gate",
            validation_definitions=[definition],
            # counts only: no value of any row (PII or not) is copied into results or Data Docs
            result_format={"result_format": "BASIC", "partial_unexpected_count": 0},
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _for_gx(frame)
        for name, col in contract.columns.items():
            if not col.nullable and name in data.columns:
                mask = (unreadable or {}).get(name)
                data[f"{READABLE}{name}"] = True if mask is None else ~np.asarray(mask, dtype=bool)
        result = checkpoint.run(batch_parameters={"dataframe": data})

    outcomes: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    for run in result.run_results.values():
        for r in run.results:
            check_id = (r.expectation_config.meta or {}).get("check_id", "")
            outcomes[check_id].append((bool(r.success), int((r.result or {}).get("unexpected_count") or 0)))
    if docs_dir is not None:
        _keep_docs(context, docs_dir)
    return {
        check_id: GxOutcome(all(s for s, _ in rs), len(rs), sum(n for _, n in rs))
        for check_id, rs in outcomes.items()
    }


def _keep_docs(context: Any, docs_dir: Path) -> None:
    context.build_data_docs()
    site = next(iter(context.get_docs_sites_urls()))["site_url"]
    source = Path(site.removeprefix("file://")).parent
    with staging_dir(docs_dir) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        replace_dir(staging, docs_dir)
