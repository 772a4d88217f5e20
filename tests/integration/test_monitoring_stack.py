"""Monitoring proved against the real thing: a pipeline run pushes to a real Pushgateway, the real local
stack (`engage serve`'s three servers) serves its production model while bounded traffic flows, and a
real Prometheus scrapes both and evaluates the rule files; the real ``engage audit verify
--pushgateway`` pushes a small trail's verification there too. Then every metric of the catalogue, every
recording rule, every selector of every alert and every dashboard panel's query must return data: a
metric renamed in code and not in a rule or a panel fails here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engage.telemetry import CATALOGUE
from engage_serving._stack import Stack, StackPorts, prepare_version, run_stack
from tests.monitoring_support import ROOT, RULES, binary, metric_name, query, selectors
from tests.serving_support import free_port

pytestmark = pytest.mark.slow

SMALL_DRIFT = {
    "ENGAGE_DRIFT_MIN_ROWS": "50",
    "ENGAGE_DRIFT_TEST_EVERY_ROWS": "50",
    "ENGAGE_DRIFT_BACKEND": "scipy",
}
#: how long Prometheus gets to scrape and evaluate (5 s intervals) once the traffic is in
SETTLE_SECONDS = 60
#: the trail name the stack's audit verification pushes under
TRAIL = "stack"


def _dashboards() -> Any:
    spec = importlib.util.spec_from_file_location(
        "engage_dashboards", ROOT / "monitoring/grafana/dashboards.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _verify_audit_trail(folder: Path, pushgateway: str) -> None:
    """A SQLite trail of three records, verified by the real CLI, which pushes the result (the
    ``governance`` metrics of the catalogue)."""
    from engage.governance import AuditTrail, open_database

    url = f"sqlite:///{folder}/audit.db"
    db = open_database(url)
    try:
        trail = AuditTrail(db)
        for i in range(3):
            trail.append("registry.publish", actor="stack-test", subject="registry:stack", payload={"n": i})
    finally:
        db.dispose()
    engage = str(Path(sys.executable).parent / "engage")
    done = subprocess.run(
        [engage, "audit", "verify", "--db", url, "--pushgateway", pushgateway, "--trail-name", TRAIL],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _push_live_report(pushgateway: str) -> None:
    """A small live report, pushed by the real ``push_live_metrics`` (what ``engage feedback
    --pushgateway`` calls): the ``feedback`` metrics of the catalogue, a rule of each live section, one of
    them crossed."""
    from engage.feedback import LiveHead, LiveReport, PredictionDrift, push_live_metrics
    from engage.policy import RuleOutcome

    drift = PredictionDrift(psi=0.31, ks=0.2, ks_p_value=0.001, threshold=0.2, reference="training reference",
                            reference_rows=800, current_rows=600)  # fmt: skip
    churn = LiveHead("churn", "classification", "churn_probability", 600, 450, metrics={"auc_roc": 0.81},
                     fairness={"gender": {"demographic_parity_ratio": 0.93}}, drift=drift,
                     business={"predicted_mean": 0.22, "realised_mean": 0.2})  # fmt: skip
    ltv = LiveHead("ltv", "regression", "ltv", 600, 450, metrics={"r2": 0.78},
                   business={"predicted_mean": 410.0, "realised_mean": 395.0})  # fmt: skip
    rules = [
        RuleOutcome(head="churn", rule="auc_roc >= 0.8", observed=0.81, threshold=0.8, passed=True,
                    section="live_accuracy"),
        RuleOutcome(head="churn", rule="gender: demographic_parity_ratio >= 0.8", observed=0.93,
                    threshold=0.8, passed=True, section="live_fairness"),
        RuleOutcome(head="churn", rule="prediction PSI <= 0.2 (against training reference)", observed=0.31,
                    threshold=0.2, passed=False, section="prediction_drift"),
    ]  # fmt: skip
    report = LiveReport(model="engage", versions=["v1"], since=None, until=None, predictions=600,
                        labelled=450, heads={"churn": churn, "ltv": ltv}, rules=rules, verdict="fail",
                        reasons=["prediction_drift"], policy="test")  # fmt: skip
    push_live_metrics(report, pushgateway, model="engage")


def _traffic(stack: Stack, reference: Path) -> None:
    """Bounded traffic: good V1 and V2 predictions, refused ones, explanations; enough rows for drift."""
    from engage.tables import read_table

    rows = json.loads(read_table(reference / "reference.parquet").head(200).to_json(orient="records"))
    rows[1]["gender"] = "female"  # a protected attribute rides along: engage_prediction_group_total
    predict = stack.urls["predictor"] + "/v1/models/engage:predict"
    with httpx.Client(timeout=30) as client:
        for i in range(0, 200, 4):
            assert client.post(predict, json={"instances": rows[i : i + 4]}).status_code == 200
        broken = {k: v for k, v in rows[0].items() if k != next(iter(rows[0]))}
        for _ in range(3):  # refused: a missing field (422), malformed JSON (400)
            assert client.post(predict, json={"instances": [broken, {"nope": 1}]}).status_code == 422
            assert (
                client.post(predict, content=b"{", headers={"content-type": "application/json"}).status_code
                == 400
            )
        explain = stack.urls["explainer"] + "/v1/models/engage:explain"
        for method in ("tree_shap", "lime"):
            answer = client.post(explain, json={"instances": rows[:1], "method": method})
            assert answer.status_code == 200, answer.text
        drift = stack.urls["drift_detector"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the logger's events reach the detector; a window test runs
            if "engage_drift_last_test_timestamp_seconds{" in client.get(drift + "/metrics").text:
                break
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(
    pipeline_workspace: dict[str, Any], session_pushgateway: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary("prometheus", package="prometheus")
    first = pipeline_workspace["first"]
    assert first.state == "SUCCEEDED", first.error
    out = tmp_path_factory.mktemp("stack")
    # the same rules, every group evaluated at the global 5 s: the test proves the expressions return
    # data, not the budget group's production cadence (5 m), which would outlast the test
    rules = []
    for path in RULES:
        content = yaml.safe_load(path.read_text())
        for group in content["groups"]:
            group.pop("interval", None)
        rules.append(out / path.name)
        rules[-1].write_text(yaml.safe_dump(content))
    model, reference, _ = prepare_version(pipeline_workspace["params"]["registry"], "production", out / "v")
    assert reference is not None
    _verify_audit_trail(out, session_pushgateway)
    _push_live_report(session_pushgateway)
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    with run_stack(
        model, reference, out, ports=ports, extra_env=SMALL_DRIFT, rule_files=rules,
        pushgateway=session_pushgateway, say=lambda _: None, review_db=f"sqlite:///{out}/governance.db",
        event_store=str(out / "events"),
    ) as stack:  # fmt: skip
        _traffic(stack, reference)
        url = stack.urls["prometheus"]
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:  # every target up and the rules evaluated at least twice
            try:
                targets = httpx.get(url + "/api/v1/targets").json()["data"]["activeTargets"]
                groups = httpx.get(url + "/api/v1/rules").json()["data"]["groups"]
            except (httpx.TransportError, ValueError, KeyError):
                time.sleep(1)
                continue
            evaluated = all(g.get("lastEvaluation", "").startswith("20") for g in groups)
            if len(targets) == 4 and all(t["health"] == "up" for t in targets) and evaluated and groups:
                break
            time.sleep(1)
        time.sleep(15)  # two more scrapes and evaluations: rate() over the traffic has two points
        yield url


#: what this stack does not run: the CloudWatch bridge's own metrics are tested with the bridge
#: (tests/integration/test_cloudwatch_bridge.py)
ELSEWHERE = {"cloudwatch"}


def test_every_catalogue_metric_has_series(prometheus: str) -> None:
    expected = {name: spec for name, spec in CATALOGUE.items() if spec.source not in ELSEWHERE}
    missing = [
        name for name, spec in expected.items() if not query(prometheus, f"count({spec.series_names()[0]})")
    ]
    assert missing == [], f"no series in Prometheus for: {missing}"


def test_every_recording_rule_returns_data(prometheus: str) -> None:
    records = [r["record"] for r in _rules() if "record" in r]
    assert len(records) >= 10
    empty = [name for name in records if not query(prometheus, name)]
    health = {
        r["name"]: f"{r.get('health')} {r.get('lastError', '')}".strip()
        for g in httpx.get(prometheus + "/api/v1/rules").json()["data"]["groups"]
        for r in g["rules"]
    }
    assert empty == [], "recording rules without data:\n" + "\n".join(f"{n}: {health.get(n)}" for n in empty)


def test_every_alert_selector_returns_data(prometheus: str) -> None:
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) >= 8
    blind = []
    for rule in alerts:
        for selector in selectors(rule["expr"]):
            if metric_name(selector) in {"ALERTS", "ALERTS_FOR_STATE"}:
                continue
            if not query(prometheus, selector):
                blind.append(f"{rule['alert']}: {selector}")
    assert blind == [], "alert selectors that match no series:\n" + "\n".join(blind)


def test_every_dashboard_panel_returns_data(prometheus: str) -> None:
    module = _dashboards()
    checked, empty = 0, []
    for uid in module.DASHBOARDS:
        board = json.loads((ROOT / "monitoring" / "grafana" / f"{uid}.json").read_text())
        for title, expr in module.queries(board):
            checked += 1
            if not query(prometheus, expr):
                empty.append(f"{uid} / {title}: {expr}")
    assert checked >= 40
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_the_pipeline_figures_reach_prometheus(prometheus: str) -> None:
    r2 = query(prometheus, 'engage_model_metric{metric="r2"}')
    assert {s["metric"]["head"] for s in r2} == {"engagement_score", "ltv"}
    assert all(s["metric"]["job"] == "engage_pipeline" for s in r2)
    parity = query(prometheus, "engage_fairness_parity_ratio")
    assert {s["metric"]["attribute"] for s in parity} >= {"gender"}
    assert query(prometheus, "engage_pipeline_run_success")[0]["value"][1] == "1"
    active = {
        s["metric"]["window"]: float(s["value"][1])
        for s in query(prometheus, "engage_business_active_customers")
    }
    assert active["1d"] <= active["7d"] <= active["30d"]
    freshness = query(prometheus, "engage_data_freshness_hours")
    assert freshness
    assert float(freshness[0]["value"][1]) < 24


def test_the_live_report_reaches_prometheus_and_its_crossed_rule_alerts(prometheus: str) -> None:
    psi = query(prometheus, 'engage_live_prediction_psi{head="churn"}')
    assert [(s["metric"]["job"], s["metric"]["instance"], s["metric"]["model"]) for s in psi] == [
        ("engage_feedback", "engage", "engage")
    ]
    assert float(psi[0]["value"][1]) == 0.31
    assert query(prometheus, "engage_live_coverage")[0]["value"][1] == "0.75"
    # the crossed drift rule is pending (for: 5m; firing after), the rules that hold are not
    alerts = query(prometheus, 'ALERTS{alertname=~"EngageLive.*"}')
    assert [(s["metric"]["alertname"], s["metric"]["head"]) for s in alerts] == [
        ("EngageLivePredictionDrift", "churn")
    ]
    assert query(prometheus, 'ALERTS{alertname="EngageFeedbackStale"}') == []


def test_the_audit_verification_reaches_prometheus(prometheus: str) -> None:
    problems = query(prometheus, f'engage_audit_problems{{trail="{TRAIL}"}}')
    assert {s["metric"]["kind"]: s["value"][1] for s in problems} == {
        "edited": "0", "deleted": "0", "broken_link": "0", "head": "0",
    }  # fmt: skip
    assert {(s["metric"]["job"], s["metric"]["instance"]) for s in problems} == {("engage_audit", TRAIL)}
    assert query(prometheus, f'engage_audit_records_checked{{trail="{TRAIL}"}}')[0]["value"][1] == "3"
    assert query(prometheus, f'engage_audit_head_seq{{trail="{TRAIL}"}}')[0]["value"][1] == "3"
    # an intact, fresh verification: neither audit alert is pending or firing
    assert query(prometheus, 'ALERTS{alertname=~"EngageAuditTrail.*"}') == []
