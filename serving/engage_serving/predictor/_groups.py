"""Predictions by protected group, label-free: ``engage_prediction_group_total``.

A request may carry the contract's protected attributes beside the features (they ride along in
:attr:`Batch.extras`, as the fairness offsets read them). For each such row the predictor counts, per
classification head, the row's group and its decision: ``positive`` when the probability is at least the
head's decision threshold, ``negative`` below. Positive rates by group give the demographic parity of the
live traffic of each revision at once, no outcome needed: what ``engage rollout`` judges a canary by.

The labels stay bounded: only the contract's protected attributes that declare their groups count, a
categorical one by its ``categories``, a numeric one by its ``bins`` (labelled as the offline gate labels
them, ``25-34``); any other value is the group ``other``, and a row without the attribute is not counted.
An attribute's series (every group, both decisions, at 0) appear with the first request carrying it, so
``increase()`` sees a group's first predictions and a group without positives still has its series.

The work per request: up to :data:`SMALL_ROWS` rows, a dictionary or bisection look-up per row (a few
microseconds for one row); above, a few numpy operations per attribute and head, with no loop over the rows.
Both give the same counts (tested).
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from engage.contract import Contract

__all__ = ["DECISIONS", "OTHER", "SMALL_ROWS", "GroupAttribute", "GroupCounter"]

log = logging.getLogger("engage_serving.predictor")

#: the group of a value outside the contract's categories or bins
OTHER = "other"
#: the decision label by index: below the threshold, at or above it
DECISIONS = ("negative", "positive")
#: up to this many rows a request's groups are looked up row by row (cheaper here), above with numpy
SMALL_ROWS = 32
_MISSING = -1
Codes = npt.NDArray[np.intp]


@dataclass(frozen=True)
class GroupAttribute:
    """One protected attribute: its groups (the last one :data:`OTHER`) and how a value finds its group:
    by equality with ``categories``, or by the half-open bins ``[edges[i], edges[i + 1])``."""

    name: str
    groups: tuple[str, ...]
    categories: tuple[str, ...] = ()
    edges: tuple[float, ...] = ()

    @classmethod
    def categorical(cls, name: str, categories: Sequence[str]) -> GroupAttribute:
        return cls(name, (*categories, OTHER), categories=tuple(categories))

    @classmethod
    def binned(cls, name: str, edges: Sequence[float]) -> GroupAttribute:
        from engage.model._groups import bin_labels

        return cls(name, (*bin_labels(edges), OTHER), edges=tuple(float(e) for e in edges))

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.categories)}

    def code(self, value: Any) -> int:
        """One value's group index; -1 for a missing value (None, or NaN for a binned attribute)."""
        other = len(self.groups) - 1
        if self.edges:
            x = _number(value)
            if math.isnan(x):
                return _MISSING
            i = bisect.bisect_right(self.edges, x) - 1
            return i if 0 <= i < len(self.edges) - 1 else other
        if value is None:
            return _MISSING
        try:
            return self._index.get(value, other)
        except TypeError:  # unhashable (a list, an object): no category
            return other

    def codes(self, values: Sequence[Any]) -> Codes:
        """:meth:`code` of every value, with numpy."""
        other = len(self.groups) - 1
        if self.edges:
            x = _numbers(values)
            edges = np.asarray(self.edges)
            codes = np.searchsorted(edges, x, side="right") - 1
            codes[(codes < 0) | (codes >= len(edges) - 1)] = other
            codes[np.isnan(x)] = _MISSING
            return codes.astype(np.intp, copy=False)
        array = np.empty(len(values), dtype=object)
        array[:] = values
        codes = np.full(len(values), other, dtype=np.intp)
        for i, category in enumerate(self.categories):
            codes[array == category] = i
        codes[array == None] = _MISSING  # noqa: E711 # elementwise: each object against None
        return codes


def _numbers(values: Sequence[Any]) -> npt.NDArray[np.float64]:
    """The values as floats: None is NaN (missing); anything that is no number, +inf (so: other)."""
    try:
        x = np.asarray(values, dtype=np.float64)
        if x.shape == (len(values),):
            return x
    except (TypeError, ValueError):
        pass
    return np.fromiter((_number(v) for v in values), dtype=np.float64, count=len(values))


def _number(value: Any) -> float:
    """As numpy reads a value into a float array (None, "nan": NaN); what it cannot read, +inf."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.inf


@functools.cache
def _counter() -> Any:
    """``engage_prediction_group_total``, registered once per process."""
    from engage.telemetry import metric

    return metric("engage_prediction_group").create()


class GroupCounter:
    """Counts the predictions of the classification heads (``thresholds``: output -> decision threshold)
    by group of each attribute, into ``engage_prediction_group_total{model=<model>}``."""

    def __init__(
        self,
        model: str,
        attributes: Sequence[GroupAttribute],
        thresholds: Mapping[str, float],
        counter: Any = None,
    ) -> None:
        self.model = model
        self.attributes = {a.name: a for a in attributes}
        self.thresholds = dict(thresholds)
        self.counter = counter if counter is not None else _counter()
        #: (head, attribute) -> the children of every group and decision (index group * 2 + decision)
        self._children: dict[tuple[str, str], list[Any]] = {}

    @classmethod
    def for_contract(
        cls,
        model: str,
        contract: Contract,
        carried: Sequence[str],
        thresholds: Mapping[str, float],
        counter: Any = None,
    ) -> GroupCounter | None:
        """The counter of the contract's protected attributes that ride along (``carried``, not model
        inputs) and declare their groups; None when there is no such attribute or no classification head."""
        attributes = []
        for name in contract.protected:
            column = contract.columns[name]
            if name not in carried:
                continue
            if column.categories:
                attributes.append(GroupAttribute.categorical(name, column.categories))
            elif column.bins:
                attributes.append(GroupAttribute.binned(name, column.bins))
            else:
                log.warning(
                    "protected attribute %s declares no categories or bins: not counted by group", name
                )
        if not attributes or not thresholds:
            return None
        return cls(model, attributes, thresholds, counter)

    def count(self, out: Mapping[str, Sequence[float]], extras: Mapping[str, Sequence[Any]]) -> None:
        """Count one request's predictions (``out``: output -> values) by the groups in ``extras``."""
        carried = [(a, extras[name]) for name, a in self.attributes.items() if name in extras]
        heads = [(head, t) for head, t in self.thresholds.items() if head in out]
        if not carried or not heads:
            return
        if len(carried[0][1]) <= SMALL_ROWS:
            for attribute, values in carried:
                for head, threshold in heads:
                    children = None
                    for code, value in zip(map(attribute.code, values), out[head], strict=True):
                        if code != _MISSING:
                            children = children or self._children_of(head, attribute)
                            children[code * 2 + (value >= threshold)].inc()
            return
        decisions = {
            head: (np.asarray(out[head], dtype=np.float64) >= threshold).astype(np.intp)
            for head, threshold in heads
        }
        for attribute, values in carried:
            codes = attribute.codes(values)
            present = codes != _MISSING
            if not present.any():
                continue
            size = 2 * len(attribute.groups)
            for head, positive in decisions.items():
                counts = np.bincount(codes[present] * 2 + positive[present], minlength=size)
                children = self._children_of(head, attribute)
                for index in np.flatnonzero(counts).tolist():
                    children[index].inc(int(counts[index]))

    def _children_of(self, head: str, attribute: GroupAttribute) -> list[Any]:
        key = (head, attribute.name)
        children = self._children.get(key)
        if children is None:  # every group and decision at once: each series starts at 0
            children = [
                self.counter.labels(self.model, head, attribute.name, group, decision)
                for group in attribute.groups
                for decision in DECISIONS
            ]
            self._children[key] = children
        return children
