"""The rollout's decision logic on fixed query results (no server): the statistics, each check, the watch
loop on a test clock with Prometheus' answers given, the policy file, the kubectl patch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engage.errors import ConfigError, DeployError
from engage.rollout import (
    PrometheusError,
    RolloutPolicy,
    Target,
    apply_patch,
    judge,
    kubectl_patch_command,
    load_rollout_policy,
    mean_shift,
    parse_duration,
    parse_target,
    population_stability_index,
    target_queries,
    traffic_patch,
    watch,
)
from tests.serving_support import free_port

STABLE, CANARY = Target("job", "stable"), Target("job", "canary")
POLICY = RolloutPolicy(period_seconds=60, interval_seconds=10, window_seconds=30, min_requests=20)
UNIT_LE = [0.25, 0.5, 0.75, 1.0, math.inf]


def histogram(counts: Sequence[float], les: Sequence[float] = UNIT_LE) -> list[tuple[float, float]]:
    """Cumulative ``(le, count)`` pairs from per-bucket counts."""
    total, out = 0.0, []
    for le, n in zip(les, counts, strict=True):
        total += n
        out.append((le, total))
    return out


def results(
    *, requests: float = 100, errors: float | None = None, p95: float = 0.01, churn: Sequence[float] = (10, 40, 40, 10, 0),
    version: str = "sha256:aaa", drift: float | None = None, parity: float | None = None,
) -> dict[str, list[tuple[dict[str, str], float]]]:  # fmt: skip
    """One target's answers, as :func:`judge` reads them (the unit head ``churn_probability`` only)."""
    cumulative = histogram(churn)
    n = sum(churn)
    mids = [0.125, 0.375, 0.625, 0.875, 1.0]
    out: dict[str, list[tuple[dict[str, str], float]]] = {
        "requests": [({}, requests)],
        "errors": [] if errors is None else [({}, errors)],
        "p95": [({}, p95)],
        "versions": [({"version": version}, 1.0)],
        "drift": [] if drift is None else [({"head": "churn_probability"}, drift)],
        "parity": [] if parity is None else [({"head": "churn_probability", "attribute": "gender"}, parity)],
        "engage_prediction:buckets": [
            ({"head": "churn_probability", "le": "+Inf" if math.isinf(le) else str(le)}, c) for le, c in cumulative
        ],
        "engage_prediction:sum": [({"head": "churn_probability"}, sum(m * c for m, c in zip(mids, churn, strict=True)))],
        "engage_prediction:count": [({"head": "churn_probability"}, n)],
    }  # fmt: skip
    return out


def checks(
    stable: Mapping[str, Any], canary: Mapping[str, Any], policy: RolloutPolicy = POLICY
) -> dict[str, Any]:
    found = judge(stable, canary, target_queries(STABLE, policy), target_queries(CANARY, policy), policy, "t")
    return {e.check: e for e in found}


# --- the statistics -------------------------------------------------------------------------------------


def test_psi_is_zero_for_the_same_shares_and_matches_the_formula() -> None:
    assert population_stability_index(histogram([10, 40, 40, 10, 0]), histogram([20, 80, 80, 20, 0])) == 0.0
    s, c = [0.1, 0.4, 0.4, 0.1], [0.4, 0.4, 0.1, 0.1]
    expected = sum((ci - si) * math.log(ci / si) for si, ci in zip(s, c, strict=True))
    got = population_stability_index(histogram([10, 40, 40, 10, 0]), histogram([40, 40, 10, 10, 0]))
    assert got == pytest.approx(expected)
    assert got > 0.25  # a major shift by the conventional reading


def test_psi_of_an_empty_bucket_is_finite() -> None:
    assert math.isfinite(
        population_stability_index(histogram([50, 50, 0, 0, 0]), histogram([0, 0, 50, 50, 0]))
    )
    with pytest.raises(ValueError, match="without observations"):
        population_stability_index(histogram([0, 0, 0, 0, 0]), histogram([1, 0, 0, 0, 0]))


def test_mean_shift_is_in_stable_standard_deviations() -> None:
    # all stable mass in the first bucket (0..0.25): its spread is the within-bucket one, 0.25 / sqrt(12)
    stable = histogram([100, 0, 0, 0, 0])
    sd = 0.25 / math.sqrt(12)
    assert mean_shift(stable, 0.125, 0.125 + 2 * sd) == pytest.approx(2.0)
    assert mean_shift(stable, 0.125, 0.125) == 0.0


# --- the checks of one evaluation --------------------------------------------------------------------------


def test_a_canary_like_stable_passes_every_check() -> None:
    found = checks(results(), results(version="sha256:bbb"))
    assert all(e.passed for e in found.values()), [e.describe() for e in found.values()]
    assert found["prediction_psi:churn_probability"].value == 0.0
    assert "drift_statistic:churn_probability" not in found  # no series: not judged
    assert not [name for name in found if name.startswith("live_parity")]  # no group series: not judged
    assert 'job="canary"' in found["canary_error_rate"].query


def test_each_threshold_fails_its_own_check() -> None:
    bad = checks(
        results(p95=0.01, parity=0.9),
        results(errors=5, p95=0.4, churn=(0, 10, 40, 50, 0), drift=0.5, parity=0.6),
    )
    failed = {name for name, e in bad.items() if e.passed is False}
    assert failed == {
        "canary_error_rate", "canary_p95_seconds", "canary_p95_ratio", "prediction_psi:churn_probability",
        "prediction_mean_shift_sd:churn_probability", "drift_statistic:churn_probability",
        "live_parity_ratio:churn_probability:gender", "live_parity_drop:churn_probability:gender",
    }  # fmt: skip
    assert bad["canary_error_rate"].value == pytest.approx(0.05)
    assert bad["canary_p95_ratio"].value == pytest.approx(40.0)
    assert not bad["drift_statistic:churn_probability"].required


def test_live_parity_against_the_gate_and_the_stable_revision() -> None:
    name = "churn_probability:gender"
    fine = checks(results(parity=0.95), results(parity=0.85))
    assert fine[f"live_parity_ratio:{name}"].passed is True  # >= 0.8
    assert fine[f"live_parity_drop:{name}"].value == pytest.approx(0.10)
    assert fine[f"live_parity_drop:{name}"].passed is True  # <= 0.15
    dropped = checks(results(parity=1.0), results(parity=0.82))  # above the gate, but 0.18 under stable
    assert dropped[f"live_parity_ratio:{name}"].passed is True
    assert dropped[f"live_parity_drop:{name}"].failed
    query = dropped[f"live_parity_ratio:{name}"].query
    assert 'engage_prediction_group_total{job="canary",group!="other",decision="positive"}' in query
    assert ">= 1000" in query  # the policy's min_group_predictions
    assert dropped[f"live_parity_drop:{name}"].query.startswith("((min by (head, attribute) ((sum by")
    alone = checks(results(), results(parity=0.9))  # stable without ratio: the drop is not judged
    assert alone[f"live_parity_drop:{name}"].passed is None
    assert not alone[f"live_parity_drop:{name}"].inconclusive  # optional: no data is no reason to wait
    nobody = checks(results(parity=math.nan), results(parity=math.nan))  # 0 / 0: no positives anywhere
    assert (nobody[f"live_parity_ratio:{name}"].value, nobody[f"live_parity_drop:{name}"].value) == (1.0, 0.0)
    assert "no group had a positive decision" in nobody[f"live_parity_ratio:{name}"].note
    strict = RolloutPolicy(min_parity_ratio=0.9, max_parity_drop=0.05, min_group_predictions=50)
    found = checks(results(parity=0.95), results(parity=0.88), strict)
    assert found[f"live_parity_ratio:{name}"].failed
    assert found[f"live_parity_drop:{name}"].failed
    assert ">= 50)" in found[f"live_parity_ratio:{name}"].query


def test_latency_ratio_under_the_floor_is_not_judged() -> None:
    found = checks(results(p95=0.001), results(p95=0.02))  # 20x, but 20 ms: under the 25 ms floor
    assert found["canary_p95_ratio"].passed is True
    assert "floor" in found["canary_p95_ratio"].note


def test_too_little_canary_traffic_leaves_the_checks_without_data() -> None:
    found = checks(results(), results(requests=3))
    assert found["canary_requests"].passed is False
    assert found["canary_error_rate"].passed is None
    assert found["prediction_psi:churn_probability"].passed is None
    empty = checks(results(), {})
    assert empty["canary_requests"].value is None
    assert empty["prediction_psi:churn_probability"].passed is None
    no_stable = checks({}, results(p95=0.05))  # a stable matcher that matches nothing: nothing to compare
    assert no_stable["canary_p95_ratio"].passed is None
    assert no_stable["prediction_psi:churn_probability"].passed is None
    assert no_stable["prediction_psi:churn_probability"].inconclusive
    canary_only = {k: v for k, v in results().items() if not k.startswith("engage_prediction")}
    assert checks(canary_only, canary_only)["prediction_psi"].inconclusive  # no histogram at all


# --- the watch, on a test clock -------------------------------------------------------------------------


class FakeTime:
    """The watch's clock: sleeping moves it on at once."""

    def __init__(self) -> None:
        self.at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        self.slept = 0.0

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.at += timedelta(seconds=seconds)


def prometheus(answers: Callable[[int], tuple[Mapping[str, Any], Mapping[str, Any]]]) -> httpx.Client:
    """A client whose transport answers each query as Prometheus' API would, from ``answers(evaluation)``
    (the stable and canary results); the evaluation counts the ``requests`` queries of the canary."""
    names = {
        **{q: ("stable", n) for n, q in target_queries(STABLE, POLICY).items()},
        **{q: ("canary", n) for n, q in target_queries(CANARY, POLICY).items()},
    }
    seen = {"n": 0}

    def handle(request: httpx.Request) -> httpx.Response:
        target, name = names[request.url.params["query"]]
        if target == "stable" and name == "requests":
            seen["n"] += 1
        stable, canary = answers(seen["n"])
        samples = (stable if target == "stable" else canary).get(name, [])
        vector = [{"metric": dict(labels), "value": [0, str(v)]} for labels, v in samples]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": vector}}
        )

    return httpx.Client(transport=httpx.MockTransport(handle))


def test_watch_promotes_a_healthy_canary_after_the_period() -> None:
    clock = FakeTime()
    with prometheus(lambda _: (results(), results(version="sha256:bbb"))) as client:
        decision = watch("http://prometheus", POLICY, STABLE, CANARY, clock, client=client)
    assert decision.outcome == "promote"
    assert decision.evaluations == 7  # at 0, 10, ..., 60 s: the start and the end of the period
    assert clock.slept == 60
    assert decision.versions == {"stable": ["sha256:aaa"], "canary": ["sha256:bbb"]}
    assert len(decision.evidence) == 7 * len(decision.decisive)


def test_watch_rolls_back_early_after_failures_in_a_row() -> None:
    clock = FakeTime()

    def answers(n: int) -> tuple[Any, Any]:  # one failure, a pass, then failing for good from the 3rd
        return results(), results(errors=10 if n in (1, 3, 4, 5, 6) else None)

    with prometheus(answers) as client:
        decision = watch("http://prometheus", POLICY, STABLE, CANARY, clock, client=client)
    assert decision.outcome == "rollback"
    assert decision.evaluations == 4  # stopped at the 2nd failure in a row, not the period's end
    assert decision.failed == ["canary_error_rate"]
    assert "canary_error_rate: 0.1 (must be <= 0.01): FAIL" in decision.reason
    assert json.loads(json.dumps(decision.to_json()))["decisive"][1]["check"] == "canary_error_rate"


def test_watch_without_canary_traffic_is_insufficient_data() -> None:
    with prometheus(lambda _: (results(), results(requests=2))) as client:
        decision = watch("http://prometheus", POLICY, STABLE, CANARY, FakeTime(), client=client)
    assert decision.outcome == "insufficient_data"
    assert decision.reason.startswith("canary_requests: 2 (must be >= 20): FAIL (too little canary traffic")
    assert "no data for: canary_error_rate, canary_p95_seconds, canary_p95_ratio" in decision.reason
    with prometheus(lambda _: (results(), {})) as client:  # the label matches nothing
        assert (
            watch("http://p", POLICY, STABLE, CANARY, FakeTime(), client=client).outcome
            == "insufficient_data"
        )


def test_prometheus_unreachable_or_refusing_is_a_named_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusError, match=f"Prometheus at {dead} cannot be reached"):
        watch(dead, POLICY, STABLE, CANARY, FakeTime())

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse error"})

    with (
        httpx.Client(transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(PrometheusError, match=r"refused .*bad_data: parse error"),
    ):
        watch("http://p", POLICY, STABLE, CANARY, FakeTime(), client=client)


# --- the policy, the targets, the patch -------------------------------------------------------------------


def test_policy_file_section_durations_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yml"
    path.write_text("rollout:\n  period_seconds: 2m\n  window_seconds: 30s\n  max_psi: 0.1\n")
    policy = load_rollout_policy(path, interval_seconds=5.0, period_seconds=None)
    assert (policy.period_seconds, policy.interval_seconds, policy.window_seconds, policy.max_psi) == (
        120,
        5,
        30,
        0.1,
    )
    assert load_rollout_policy().max_error_rate == 0.01
    path.write_text("max_psi: -1\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"rollout policy .*max_psi: .*greater than 0.*bogus: Extra"):
        load_rollout_policy(path)
    path.write_text("fairness_metric: engage_live_fairness_parity_ratio\nmax_parity_drop: 2\n")
    with pytest.raises(
        ConfigError, match=r"max_parity_drop: .*less than or equal to 1.*fairness_metric: Extra"
    ):
        load_rollout_policy(path)
    path.write_text("window_seconds: soon\n")
    with pytest.raises(ConfigError, match=r"window_seconds: .*give a duration"):
        load_rollout_policy(path)
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ConfigError, match="--period '0s': must be more than 0"):
        parse_duration("0s", "--period")
    assert (
        'sum(increase(engage_request_duration_seconds_count{job="canary",route=~"predict|infer"}[30s]))'
        in (target_queries(CANARY, policy).values())
    )


def test_targets_are_label_value_pairs_escaped_in_promql() -> None:
    assert (
        parse_target("revision=engage-predictor-00002", "--canary").matcher
        == 'revision="engage-predictor-00002"'
    )
    assert Target("job", 'a"b').matcher == 'job="a\\"b"'
    for bad in ("job", "=x", "job=", "1job=x", "__name__=x"):
        with pytest.raises(ConfigError, match=r"--stable .*LABEL=VALUE"):
            parse_target(bad, "--stable")


def test_the_patch_and_kubectl_command() -> None:
    assert traffic_patch("promote") == {"spec": {"predictor": {"canaryTrafficPercent": 100}}}
    assert traffic_patch("rollback") == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert traffic_patch("insufficient_data") is None
    command = kubectl_patch_command("engage", "ml", traffic_patch("rollback") or {}, context="prod")
    assert command == [
        "kubectl", "patch", "inferenceservice", "engage", "--namespace", "ml", "--context", "prod",
        "--type", "merge", "--patch", '{"spec":{"predictor":{"canaryTrafficPercent":0}}}',
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="--isvc"):
        kubectl_patch_command("", "ml", {})
    with pytest.raises(DeployError, match="no-such-kubectl is not installed"):
        apply_patch(["no-such-kubectl", "patch"])
