"""Instant queries through Prometheus' HTTP API (``GET /api/v1/query``), with the standard library."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from engage.errors import ConfigError, EngageError

__all__ = ["PrometheusUnreachable", "Sample", "instant_query"]

#: (labels, evaluation time in Unix seconds, value)
Sample = tuple[dict[str, str], float, float]


class PrometheusUnreachable(EngageError):
    """Prometheus did not answer (refused, timed out, or a 5xx)."""

    http_status = 502


def instant_query(base_url: str, query: str, at: float, timeout: float) -> list[Sample]:
    """The samples of ``query`` evaluated at ``at``; a bad query is a :class:`ConfigError`."""
    url = f"{base_url.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode(
        {"query": query, "time": f"{at:.3f}"}
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310 # the operator's prometheus_url
            body = json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code in (400, 422):
            detail = _error_of(e.read())
            raise ConfigError(f"Prometheus refused the query {query!r}: {detail}") from None
        raise PrometheusUnreachable(f"Prometheus at {base_url} answered {e.code} to {query!r}") from None
    except (OSError, ValueError) as e:  # URLError, timeouts, resets, a body that is not JSON
        reason = getattr(e, "reason", e)
        raise PrometheusUnreachable(f"Prometheus at {base_url} is unreachable: {reason}") from None
    if body.get("status") != "success":
        raise ConfigError(f"Prometheus refused the query {query!r}: {body.get('error', body)}")
    data = body["data"]
    kind = data.get("resultType")
    if kind == "scalar":
        t, v = data["result"]
        return [({}, float(t), float(v))]
    if kind != "vector":
        raise ConfigError(f"the query {query!r} gives a {kind}, not an instant vector or scalar")
    return [
        (dict(item["metric"]), float(item["value"][0]), float(item["value"][1])) for item in data["result"]
    ]


def _error_of(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", "")).splitlines()[0]
    except (ValueError, AttributeError, IndexError):
        return raw.decode("utf-8", "replace")[:200]
