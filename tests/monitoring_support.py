"""Real monitoring parts for the tests: a Pushgateway on loopback, Prometheus' HTTP API, and the metric
selectors of a PromQL expression."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving_support import free_port

__all__ = [
    "RULES",
    "binary",
    "free_port",
    "metric_name",
    "metric_names",
    "pushgateway",
    "query",
    "selectors",
    "wait_ok",
]

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "monitoring" / "prometheus").glob("*.rules.yml"))


def binary(*names: str, package: str) -> str:
    """A Debian-packaged binary; outside CI a missing one skips, in CI it fails (.ci/run installs it)."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    if os.environ.get("CI"):
        pytest.fail(f"CI must install {package} (.ci/run does)")
    pytest.skip(f"{names[0]} is not installed (apt-get install {package})")


def wait_ok(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers 200 (``TimeoutError`` past ``timeout``, or at once when ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def pushgateway() -> Iterator[str]:
    """A real Pushgateway on a free loopback port: its ``host:port``."""
    path = binary("prometheus-pushgateway", "pushgateway", package="prometheus-pushgateway")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [path, f"--web.listen-address={address}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ok(f"http://{address}/-/ready", proc=process)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector (``/api/v1/query``); raises on a query Prometheus refuses."""
    import json

    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise AssertionError(f"{expr}: {body}")
    result = body["data"]["result"]
    return result if isinstance(result, list) else [result]


# --- PromQL: the metric selectors of an expression ------------------------------------------------------

_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count_over_time", "day_of_month", "day_of_week", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute",
    "month", "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets", "round",
    "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "time", "timestamp", "vector", "year",
}  # fmt: skip
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile",
}  # fmt: skip
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "atan2", "inf", "nan"}  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
#: numbers and durations (0.75, 1e3, 5m, 1h30m): never selectors
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:\d*(?:ms|[smhdwy]))*")


def selectors(expr: str) -> list[str]:
    """Each vector selector of ``expr`` (``name{matchers}``), without range or offset: what must return
    data for the expression to mean anything. Label names inside ``by (...)``, matchers and function
    names are not selectors."""
    found: list[str] = []
    i = 0
    text = expr
    while i < len(text):
        ch = text[i]
        if ch in "\"'`#":
            i = _skip(text, i)
            continue
        if ch == "{":  # a selector without a name, or matchers already taken with their name
            depth_end = _matching(text, i, "{", "}")
            i = depth_end + 1
            continue
        if ch == "[":
            i = _matching(text, i, "[", "]") + 1
            continue
        number = _NUMBER.match(text, i)
        if number is not None and number.end() > i:
            i = number.end()
            continue
        token = _TOKEN.match(text, i)
        if token is None:
            i += 1
            continue
        name, end = token.group(), token.end()
        rest = text[end:].lstrip()
        if name in _KEYWORDS and name in {"by", "without", "on", "ignoring", "group_left", "group_right"}:
            # skip the label list that follows
            if rest.startswith("("):
                start = text.index("(", end)
                i = _matching(text, start, "(", ")") + 1
            else:
                i = end
            continue
        if name in _FUNCTIONS or name in _AGGREGATIONS or name in _KEYWORDS:
            i = end
            continue
        matchers = ""
        if rest.startswith("{"):
            start = text.index("{", end)
            close = _matching(text, start, "{", "}")
            matchers = text[start : close + 1]
            end = close + 1
        found.append(name + matchers)
        i = end
    return found


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch in "\"'`#":
            i = _skip(text, i)
            continue
        if ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced {opening} in {text!r}")


def _skip(text: str, i: int) -> int:
    """Past the string literal or the comment that starts at ``i``."""
    if text[i] == "#":
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    match = _STRINGS.match(text, i)
    return match.end() if match else i + 1


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    return {metric_name(s) for s in selectors(expr)}
