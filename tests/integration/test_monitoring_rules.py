"""Monitoring as code: the Prometheus rules and their promtool tests, the Alertmanager routing, the runbooks.

The real ``promtool`` (Debian package ``prometheus``) checks and unit-tests the rules; the real ``amtool`` and
Alertmanager (``prometheus-alertmanager``) check the configuration, resolve each severity's receivers and
inhibit alerts. Static checks hold every name a rule queries to the metrics catalogue
(``engage.telemetry.series_names()``), every alert to its labels, annotations, runbook and promtool cases.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.telemetry import series_names
from tests.monitoring_support import free_port, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "monitoring" / "alertmanager"
AM_CONFIG = ALERTMANAGER / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_URL = "https://github.com/engage-ml/engage/blob/main/docs/runbooks/{}.md"
SECRETS = "/etc/alertmanager/secrets/engage-alertmanager/"

#: series other programs export: KServe's own histograms, Prometheus' and the Pushgateway's
KSERVE = {
    f"{name}{suffix}"
    for name in ("request_preprocess_seconds", "request_predict_seconds", "request_postprocess_seconds",
                 "request_explain_seconds")
    for suffix in ("_bucket", "_count", "_sum")
}  # fmt: skip
BUILTINS = {
    "up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added", "push_time_seconds",
    "push_failure_time_seconds",
}  # fmt: skip
#: alerts whose value is a constant (a boolean, absent()'s 1): their description states the fact instead
CONSTANT_VALUE_ALERTS = {
    "EngagePipelineRunFailed", "EngagePredictorDown", "EngageModelNotReady",
    # a live rule crossed (0): the description names the rule with its threshold instead
    "EngageLiveAccuracyBelowPolicy", "EngageLiveFairnessCrossed", "EngageLivePredictionDrift",
}  # fmt: skip
#: each severity's receivers, in routing order (docs/monitoring.md, "Routing")
RECEIVERS = {
    "P0": ["pagerduty", "slack-incidents"],
    "P1": ["pagerduty", "slack-alerts"],
    "P2": ["slack-alerts", "email"],
    "P3": ["email"],
}


def _binary(name: str, package: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path:
            return path
    pytest.fail(f"{name} is not installed: apt-get install {package}")


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd, check=False)


def _groups() -> list[dict[str, Any]]:
    return [
        group for path in RULE_FILES for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    ]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in _groups() for rule in group["rules"] if "alert" in rule}


def _records() -> set[str]:
    return {rule["record"] for group in _groups() for rule in group["rules"] if "record" in rule}


def test_tokenizer_finds_every_metric_and_nothing_else() -> None:
    expr = """
      sum by (model, le) (rate(foo_bucket{code=~"5..",le="0.2",route="predict"}[5m])) / on (job) group_left
      bar:ratio:rate1h > 1.5e-3 * 14.4 and absent(baz{server="predictor"} == 1)
      unless avg_over_time((qux >= bool 0.75)[30d:5m]) or time() - quux_seconds > 30 * 3600 # not_a_metric
    """
    assert metric_names(expr) == {"foo_bucket", "bar:ratio:rate1h", "baz", "qux", "quux_seconds"}
    assert metric_names("histogram_quantile(0.95, sum without (instance) (rate(x_bucket[1h])))") == {
        "x_bucket"
    }


@functools.cache
def _known() -> frozenset[str]:
    """Every name a rule or a test case may query: catalogue series, recording rules, KServe's, built-ins."""
    return frozenset(series_names() | _records() | KSERVE | BUILTINS)


def _unknown(names: set[str]) -> set[str]:
    return names - _known()


def test_every_metric_a_rule_queries_is_known() -> None:
    """A metric renamed in the catalogue and not in a rule fails here (and the tokenizer sees renames)."""
    unknown = {}
    for group in _groups():
        for rule in group["rules"]:
            if missing := _unknown(metric_names(rule["expr"])):
                unknown[rule.get("alert") or rule.get("record")] = sorted(missing)
    assert not unknown, (
        f"rules query names that are not catalogue series, recording rules or built-ins: {unknown}"
    )
    renamed = _alerts()["EngageAPIErrorRateHigh"]["expr"].replace("engage:", "engage_renamed:")
    assert _unknown(metric_names(renamed)) == {"engage_renamed:request_error_ratio:rate5m"}


def test_every_series_the_promtool_cases_use_is_known() -> None:
    """Test series under a wrong name would make a not-firing case pass for the wrong reason."""
    unknown = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for series in case.get("input_series", []):
                unknown |= _unknown({series["series"].split("{")[0]})
            for check in case.get("promql_expr_test", []):
                unknown |= _unknown(metric_names(check["expr"]))
    assert not unknown


def test_recording_rules_follow_the_naming_convention() -> None:
    for record in _records():
        assert re.fullmatch(r"engage:[a-z0-9_]+:[a-z0-9_]+", record), record


def test_every_alert_has_severity_annotations_and_runbook() -> None:
    alerts = _alerts()
    assert len(alerts) >= 19
    assert set(alerts) >= CONSTANT_VALUE_ALERTS
    for name, rule in alerts.items():
        assert name.startswith("Engage"), name
        assert rule["labels"]["severity"] in RECEIVERS, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"], name
        assert annotations["description"], name
        if name not in CONSTANT_VALUE_ALERTS:
            assert "$value" in annotations["description"], f"{name}: the description does not show the value"
        assert annotations["runbook_url"] == RUNBOOK_URL.format(name), name
        assert (RUNBOOKS / f"{name}.md").is_file(), f"{name}: docs/runbooks/{name}.md is missing"


def test_every_runbook_shows_its_alert_and_its_query() -> None:
    """Each runbook has the five sections and the alert's expression as it is in the rules."""
    alerts = _alerts()
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == set(alerts), (
        "a runbook without an alert, or the reverse"
    )
    for name, rule in alerts.items():
        text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), name
        for heading in ("## Meaning", "## Query", "## First checks", "## Mitigation", "## Escalation"):
            assert f"\n{heading}\n" in text, f"{name}: no {heading}"
        assert f"**Severity {rule['labels']['severity']}**" in text, name
        query = re.search(r"```promql\n(.*?)```", text, re.S)
        assert query is not None, name
        assert query.group(1).split() == rule["expr"].split(), (
            f"{name}: the runbook's query is not the rule's"
        )


def test_every_engage_command_a_runbook_names_exists() -> None:
    commands = set()
    for path in RUNBOOKS.glob("*.md"):
        commands |= set(
            re.findall(r"`engage ((?:registry|pipeline) [a-z]+|[a-z-]+)", path.read_text(encoding="utf-8"))
        )
    assert commands >= {"rollback", "registry audit", "pipeline submit", "validate"}
    engage = ROOT / ".venv" / "bin" / "engage"
    for command in sorted(commands):
        answer = _run(str(engage), *command.split(), "--help")
        assert answer.returncode == 0, f"engage {command}: {answer.stderr}"


def test_every_alert_has_a_firing_and_a_not_firing_promtool_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["rule_files"] == ["../engage.rules.yml"] or all(
            (path.parent / f).resolve() in RULE_FILES for f in document["rule_files"]
        )
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(_alerts())
    # promtool accepts an empty exp_alerts for a name no rule has: such a case would test nothing
    assert (firing | quiet) <= alerts, f"promtool cases for unknown alerts: {(firing | quiet) - alerts}"
    assert not alerts - firing, f"alerts without a firing case: {sorted(alerts - firing)}"
    assert not alerts - quiet, f"alerts without a not-firing case: {sorted(alerts - quiet)}"


# ---- promtool ------------------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = _binary("promtool", "prometheus")
    answer = _run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    found = sum(int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", answer.stdout))
    assert found == sum(len(group["rules"]) for group in _groups())


def test_promtool_test_rules() -> None:
    """Every test file, each by its own promtool process, run side by side (a file evaluates every rule
    group at each step of its cases' time ranges: seconds each, one core each)."""
    from concurrent.futures import ThreadPoolExecutor

    promtool = _binary("promtool", "prometheus")
    with ThreadPoolExecutor(max_workers=len(TEST_FILES)) as pool:
        answers = list(
            pool.map(lambda p: _run(promtool, "test", "rules", p.name, cwd=PROMETHEUS / "tests"), TEST_FILES)
        )
    for path, answer in zip(TEST_FILES, answers, strict=True):
        assert answer.returncode == 0, f"{path.name}:\n{answer.stdout}{answer.stderr}"
        assert answer.stdout.count("SUCCESS") == 1, path.name


def test_promtool_cases_fail_when_a_threshold_changes(tmp_path: Path) -> None:
    """The cases can fail: R² alerting under 0.70 instead of 0.75 breaks them."""
    promtool = _binary("promtool", "prometheus")
    rules = (PROMETHEUS / "engage.rules.yml").read_text(encoding="utf-8")
    mutated = rules.replace(
        'engage_model_metric{metric="r2"} < 0.75', 'engage_model_metric{metric="r2"} < 0.70'
    )
    assert mutated != rules
    (tmp_path / "engage.rules.yml").write_text(mutated, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    shutil.copy(PROMETHEUS / "tests" / "alerts_test.yml", tmp_path / "tests")
    answer = _run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path / "tests")
    assert answer.returncode != 0
    assert "alertname: EngageModelAccuracyLow" in answer.stdout + answer.stderr


# ---- Alertmanager ------------------------------------------------------------------------------------------


def _am_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text(encoding="utf-8"))
    return config


def test_amtool_check_config() -> None:
    amtool = _binary("amtool", "prometheus-alertmanager")
    answer = _run(amtool, "check-config", str(AM_CONFIG))
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "SUCCESS" in answer.stdout
    assert "4 receivers" in answer.stdout


@pytest.mark.parametrize("severity", sorted(RECEIVERS))
def test_each_severity_reaches_its_receivers(severity: str) -> None:
    amtool = _binary("amtool", "prometheus-alertmanager")
    answer = _run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  f"severity={severity}", "alertname=EngageAPIErrorRateHigh", "model=engage")  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().split(",") == RECEIVERS[severity]


@pytest.mark.parametrize(
    ("alert", "labels"),
    [
        ("EngageAuditTrailTampered", ["job=engage_audit", "instance=prod", "trail=prod", "kind=edited"]),
        ("EngageAuditTrailVerifyStale", ["trail=prod"]),
        ("EngageLiveFairnessCrossed", ["job=engage_feedback", "instance=engage", "model=engage",
                                       "section=live_fairness", "head=churn"]),
        ("EngageFeedbackStale", ["model=engage"]),
        ("EngageEventStoreFailing", ["model=engage", "instance=10.0.2.5:8080"]),
    ],
)  # fmt: skip
def test_the_audit_trail_and_feedback_alerts_reach_the_receivers_of_their_severity(
    alert: str, labels: list[str]
) -> None:
    """Tampering pages (P0: PagerDuty and #incidents); a stale verification, bias drift on live traffic, a
    stale feedback loop and a failing event store are working-hours P2s (Slack #alerts and e-mail)."""
    amtool = _binary("amtool", "prometheus-alertmanager")
    severity = _alerts()[alert]["labels"]["severity"]
    assert severity == ("P0" if alert == "EngageAuditTrailTampered" else "P2")
    answer = _run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}",
                  f"alertname={alert}", f"severity={severity}", *labels)  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().split(",") == RECEIVERS[severity]


def test_an_alert_without_a_known_severity_still_reaches_slack() -> None:
    amtool = _binary("amtool", "prometheus-alertmanager")
    for labels in (["alertname=Unlabelled"], ["alertname=Odd", "severity=critical"]):
        answer = _run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}", *labels)
        assert answer.stdout.strip() == "slack-alerts", labels


def test_alerts_are_grouped_by_alertname_and_model_and_inhibited_by_severity() -> None:
    config = _am_config()
    assert config["route"]["group_by"] == ["alertname", "model"]
    rules = config["inhibit_rules"]
    by_source = {next(m for m in r["source_matchers"] if m.startswith("severity")): r for r in rules[:3]}
    assert by_source['severity="P0"']["target_matchers"] == ['severity=~"P1|P2|P3"']
    assert by_source['severity="P1"']["target_matchers"] == ['severity=~"P2|P3"']
    assert by_source['severity="P2"']["target_matchers"] == ['severity="P3"']
    for rule in rules[:3]:
        assert rule["equal"] == ["model"]
        assert 'model=~".+"' in rule["source_matchers"]


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def test_every_receiver_secret_is_read_from_a_file() -> None:
    pairs = list(_walk(_am_config()))
    inline = {"routing_key", "service_key", "api_url", "auth_password", "smtp_auth_password", "slack_api_url",
              "auth_secret", "smtp_auth_secret"}  # fmt: skip
    assert not [k for k, _ in pairs if k in inline], "a secret written into the configuration"
    files = sorted((k, v) for k, v in pairs if k.endswith("_file"))
    assert files == sorted([
        ("smtp_auth_password_file", SECRETS + "smtp-password"),
        ("routing_key_file", SECRETS + "pagerduty-routing-key"),
        ("api_url_file", SECRETS + "slack-incidents-webhook-url"),
        ("api_url_file", SECRETS + "slack-alerts-webhook-url"),
    ])  # fmt: skip


def _rendered_config(tmp_path: Path) -> Path:
    """A copy whose secret files exist in tmp_path (dummies) and whose receivers all point at a closed
    local port: nothing leaves this machine."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pagerduty-routing-key").write_text("dummy-routing-key\n", encoding="utf-8")
    (secrets / "smtp-password").write_text("dummy-password\n", encoding="utf-8")
    for channel in ("incidents", "alerts"):
        (secrets / f"slack-{channel}-webhook-url").write_text("http://127.0.0.1:9/slack\n", encoding="utf-8")
    text = AM_CONFIG.read_text(encoding="utf-8").replace(SECRETS, f"{secrets}/")
    text = text.replace("smtp.example.org:587", "127.0.0.1:9")
    text = text.replace("global:\n", "global:\n  pagerduty_url: http://127.0.0.1:9/pagerduty\n", 1)
    shutil.copytree(ALERTMANAGER / "templates", tmp_path / "templates")
    config = tmp_path / "alertmanager.yml"
    config.write_text(text, encoding="utf-8")
    return config


def _api(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else None


def test_alertmanager_inhibits_lower_severities_of_the_same_model(tmp_path: Path) -> None:
    """The real Alertmanager loads the configuration with its secret files and applies the inhibitions."""
    binary = _binary("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager")
    amtool = _binary("amtool", "prometheus-alertmanager")
    config = _rendered_config(tmp_path)
    checked = _run(amtool, "check-config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
                assert time.monotonic() < deadline, "Alertmanager did not get ready in 30 s"
                time.sleep(0.2)
        fired = [
            {"alertname": "EngageAvailabilityBudgetBurnFast", "severity": "P0", "model": "engage", "slo": "availability"},
            {"alertname": "EngageAPIErrorRateHigh", "severity": "P1", "model": "engage"},
            {"alertname": "EngageFeatureDriftHigh", "severity": "P2", "model": "engage", "feature": "tenure_days"},
            {"alertname": "EngageFeatureDriftHigh", "severity": "P2", "model": "other", "feature": "tenure_days"},
            {"alertname": "EngagePredictorDown", "severity": "P1", "server": "predictor"},
            {"alertname": "EngagePipelineRunFailed", "severity": "P2", "job": "engage_pipeline"},
            {"alertname": "EngagePipelineMetricsStale", "severity": "P2", "job": "engage_pipeline"},
            {"alertname": "EngageDataChecksStale", "severity": "P2", "job": "engage_data_quality", "table": "customers"},
            {"alertname": "EngagePipelineCostHigh", "severity": "P3", "job": "engage_pipeline"},
            {"alertname": "EngageAuditTrailTampered", "severity": "P0", "job": "engage_audit", "trail": "prod", "kind": "edited"},
            {"alertname": "EngageAuditTrailVerifyStale", "severity": "P2", "trail": "prod"},
        ]  # fmt: skip
        _api(f"{url}/api/v2/alerts", [{"labels": labels} for labels in fired])
        deadline = time.monotonic() + 10
        while True:
            alerts = _api(f"{url}/api/v2/alerts")
            if len(alerts) == len(fired):
                break
            assert time.monotonic() < deadline, alerts
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    state = {
        (a["labels"]["alertname"], a["labels"].get("model", "")): a["status"]["state"] for a in alerts
    }  # fmt: skip
    assert state == {
        ("EngageAvailabilityBudgetBurnFast", "engage"): "active",
        ("EngageAPIErrorRateHigh", "engage"): "suppressed",  # P0 of the same model
        ("EngageFeatureDriftHigh", "engage"): "suppressed",
        ("EngageFeatureDriftHigh", "other"): "active",  # another model
        # no model label: a P1 without one inhibits nothing, a P2 without one is not inhibited
        ("EngagePredictorDown", ""): "active",
        ("EngagePipelineRunFailed", ""): "active",
        ("EngagePipelineCostHigh", ""): "active",
        ("EngagePipelineMetricsStale", ""): "active",
        ("EngageDataChecksStale", ""): "suppressed",  # explained by the pipeline not running
        # a tampered audit trail pages without holding back any other alert (it has no model label)
        ("EngageAuditTrailTampered", ""): "active",
        ("EngageAuditTrailVerifyStale", ""): "active",
    }


def test_notification_templates_render(tmp_path: Path) -> None:
    amtool = _binary("amtool", "prometheus-alertmanager")
    labels = {"alertname": "EngageAPIErrorRateHigh", "severity": "P1", "model": "engage"}
    annotations = {
        "summary": "Model engage answers over 1 % of prediction requests with 5xx",
        "description": "2% of model engage's prediction requests were answered 5xx",
        "runbook_url": RUNBOOK_URL.format("EngageAPIErrorRateHigh"),
    }
    data = {
        "receiver": "slack-alerts", "status": "firing", "externalURL": "http://alertmanager:9093",
        "groupLabels": {"alertname": labels["alertname"], "model": "engage"}, "commonLabels": labels,
        "commonAnnotations": annotations,
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations,
                    "startsAt": "2026-03-01T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}],
    }  # fmt: skip
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    answer = _run(amtool, "template", "render", f"--template.glob={ALERTMANAGER / 'templates' / '*.tmpl'}",
                  f"--template.data={tmp_path / 'data.json'}",
                  '--template.text={{ template "engage.title" . }}\n{{ template "engage.text" . }}')  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert lines[0] == "[FIRING:1] P1 EngageAPIErrorRateHigh (model engage)"
    assert annotations["summary"] in answer.stdout
    assert annotations["description"] in answer.stdout
    assert f"Runbook: {annotations['runbook_url']}" in lines
    assert "Labels: model=engage severity=P1" in lines
