"""The soak test's pure parts (benchmarks/soak.py): the timetable, the open-loop generator against a slow
fake server, the slope fit, percentiles, the socket table, the verdict and the report's exit code."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    """benchmarks/soak.py as a module (it imports its neighbour ``_results``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("soak", BENCHMARKS / "soak.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["soak"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_timetable_is_fixed_and_even(soak: ModuleType) -> None:
    due = soak.timetable(100, 600)
    assert len(due) == 60_000
    assert due[0] == 0
    assert due[-1] == pytest.approx(599.99)
    assert {round(b - a, 9) for a, b in itertools.pairwise(due)} == {0.01}
    assert soak.timetable(2.5, 4) == [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2, 3.6]
    with pytest.raises(ValueError, match="positive"):
        soak.timetable(0, 10)


def test_a_slow_server_shows_as_latency_not_as_less_load(soak: ModuleType) -> None:
    """Open loop: 40 requests due over 0.2 s to a server taking 0.1 s each. A closed loop of one
    connection would need 4 s; here every request leaves on time and its latency is the server's."""

    async def slow(i: int) -> str:
        await asyncio.sleep(0.1)
        return "ok"

    started = time.perf_counter()
    outcomes = asyncio.run(soak.open_loop(soak.timetable(200, 0.2), slow, max_in_flight=64))
    assert time.perf_counter() - started < 1.0
    assert [o.kind for o in outcomes] == ["ok"] * 40
    assert max(o.sent - o.due for o in outcomes) < 0.08
    assert all(0.1 <= o.latency_ms / 1e3 < 0.25 for o in outcomes)


def test_latency_counts_from_the_due_time_when_the_generator_is_late(soak: ModuleType) -> None:
    """The first send blocks the event loop for 0.15 s (a stalled client): the requests due meanwhile
    leave late, and that lateness is in their latency, never hidden."""

    async def first_blocks(i: int) -> str:
        if i == 0:
            time.sleep(0.15)
        return "ok"

    outcomes = asyncio.run(soak.open_loop(soak.timetable(100, 0.1), first_blocks, max_in_flight=64))
    second = outcomes[1]  # due at 0.01 s, sent after the block
    assert second.sent - second.due > 0.1
    assert second.latency_ms > 100


def test_the_in_flight_cap_sheds_and_records_every_request(soak: ModuleType) -> None:
    async def stuck(i: int) -> str:
        await asyncio.sleep(0.6)  # longer than the whole timetable, with room for a slow machine
        return "ok"

    outcomes = asyncio.run(soak.open_loop(soak.timetable(100, 0.2), stuck, max_in_flight=3))
    kinds = Counter(o.kind for o in outcomes)
    assert len(outcomes) == 20
    assert kinds == {"ok": 3, "shed_at_cap": 17}
    assert all(o.sent is None and o.latency_ms is None for o in outcomes if o.kind == "shed_at_cap")


def test_a_failing_send_is_one_outcome_not_a_crash(soak: ModuleType) -> None:
    async def broken(i: int) -> str:
        if i == 1:
            raise RuntimeError("bug")
        return "http_503" if i == 2 else "ok"

    outcomes = asyncio.run(soak.open_loop(soak.timetable(100, 0.03), broken, max_in_flight=8))
    assert [o.kind for o in outcomes] == ["ok", "generator_RuntimeError", "http_503"]


def test_the_slope_fit_recovers_a_line_and_its_noise(soak: ModuleType) -> None:
    seconds = [5.0 * i for i in range(109)]  # 9 minutes, a sample every 5 s
    line = soak.fit_slope(seconds, [300 + 0.75 * s / 60 for s in seconds])
    assert line.slope_per_min == pytest.approx(0.75)
    assert line.stderr_per_min == pytest.approx(0, abs=1e-9)
    assert line.samples == 109
    rng = random.Random(5)
    flat = soak.fit_slope(seconds, [300 + rng.gauss(0, 2) for _ in seconds])
    assert abs(flat.slope_per_min) < 3 * flat.stderr_per_min + 0.1
    # a leak of 2 MiB/min under the same noise is found
    leak = soak.fit_slope(seconds, [300 + 2 * s / 60 + rng.gauss(0, 2) for s in seconds])
    assert leak.slope_per_min > 1.5
    assert soak.fit_slope([0.0, 5.0], [1.0, 2.0]) is None
    assert soak.fit_slope([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None


def test_percentiles_are_nearest_rank(soak: ModuleType) -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert soak.percentile(values, 50) == 50
    assert soak.percentile(values, 95) == 95
    assert soak.percentile(values, 100) == 100
    assert soak.percentile([7.0], 99) == 7
    assert soak.percentile([], 95) is None


def test_rows_mix(soak: ModuleType) -> None:
    assert soak.parse_rows("1:8,16:1,64") == [(1, 8), (16, 1), (64, 1)]
    for bad in ("0", "1:0", "x", "4:y"):
        with pytest.raises(ValueError, match="--rows"):
            soak.parse_rows(bad)


def test_live_connections_are_read_from_the_socket_table(soak: ModuleType) -> None:
    # /proc/net/tcp: a listener on 0x1F90 (8080), two established connections to it, one CLOSE_WAIT
    # (a socket the server kept after the client closed: not live) and one connection to another port
    table = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 101 1
   1: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 102 1
   2: 0100007F:1F90 0100007F:A1B3 01 00000000:00000000 00:00000000 00000000  1000        0 103 1
   3: 0100007F:1F90 0100007F:A1B4 08 00000000:00000000 00:00000000 00000000  1000        0 104 1
   4: 0100007F:A1B5 0100007F:1F91 01 00000000:00000000 00:00000000 00000000  1000        0 105 1
"""
    assert soak.established_on(8080, table) == {102, 103}
    assert soak.established_on(9090, table) == set()


def test_the_verdict_fails_on_each_bar_and_on_what_was_not_measured(soak: ModuleType) -> None:
    flat = soak.Fit(0.05, 0.02, 109)
    good: dict[str, Any] = {
        "errors": 0, "p95_ms": 12.0, "rss": flat, "fds": soak.Fit(0.0, 0.0, 109),
        "achieved_rps": 99.99, "target_rps": 100.0,
    }  # fmt: skip
    checks = soak.verdict(**good)
    assert all(c["pass"] for c in checks.values()), checks
    failing: dict[str, dict[str, Any]] = {
        "errors": {"errors": 1},
        "p95_ms": {"p95_ms": 200.0},
        "rss_flat": {"rss": soak.Fit(1.0, 0.1, 109)},
        "fds_flat": {"fds": soak.Fit(0.6, 0.1, 109)},
        "rps": {"achieved_rps": 98.9},
    }
    for name, change in failing.items():
        checks = soak.verdict(**{**good, **change})
        assert [n for n, c in checks.items() if not c["pass"]] == [name]
    for unmeasured in ({"p95_ms": None}, {"rss": None}, {"fds": None}):
        assert not all(c["pass"] for c in soak.verdict(**{**good, **unmeasured}).values())


def _report(soak: ModuleType, tmp_path: Path, outcomes: list[Any], samples: list[Any]) -> tuple[int, Any]:
    args = argparse.Namespace(
        rps=100.0, duration=0.05, rows="1", sample_every=5.0, max_in_flight=8, timeout=1.0, seed=1,
        out=tmp_path / "soak.json",
    )  # fmt: skip
    extra = {"server": {"command": "predictor"}}
    code = soak.report(
        args, warmup=0.0, outcomes=outcomes, samples=samples, probes=Counter({"/metrics ok": 3}),
        bodies_sent=[("v1_objects", 1)] * len(outcomes), wall=0.05, extra=extra,
    )  # fmt: skip
    return code, json.loads(args.out.read_text())


def test_the_report_passes_a_clean_run_and_fails_one_error(soak: ModuleType, tmp_path: Path) -> None:
    outcomes = [soak.Outcome(i / 100, i / 100, i / 100 + 0.003, "ok") for i in range(5)]
    samples = [soak.Sample(float(t), 300.0, 12, 2, 3, 1.0 + t / 100, 0.5) for t in range(6)]
    code, results = _report(soak, tmp_path, outcomes, samples)
    assert code == 0
    assert results["benchmark"] == "soak"
    assert results["cases"]["verdict"]["pass"] is True
    assert results["observed"]["fds_per_min"] == 0
    assert results["cases"]["server"]["open_files_besides_connections"]["last"] == 10
    assert results["cases"]["load"]["latency_by_rows_per_request"]["rows_1"]["p50_ms"] == pytest.approx(3)

    outcomes[2] = soak.Outcome(0.02, 0.02, 0.03, "http_500")
    code, results = _report(soak, tmp_path, outcomes, samples)
    assert code == 1
    assert results["cases"]["load"]["errors_by_kind"] == {"http_500": 1}
    assert results["cases"]["verdict"]["checks"]["errors"]["pass"] is False
