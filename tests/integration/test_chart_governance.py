"""The chart's governance objects (issue 18) with the real tools: helm renders them from
``charts/engage/ci/governance-values.yaml`` and the prod overlay's component; kubernetes-validate checks
every object; the real ``engage`` CLI parses every command the pods run; the predictor's own parser takes
its review flags; rendering refuses governance without the database's Secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.k8s_support import (
    CHART,
    ROOT,
    all_restricted_problems,
    containers,
    documents,
    engage_cli_parse,
    env_problems,
    helm_template,
    kustomize,
    pod_specs,
    rendered_sources,
    run,
    server_parsers,
    tool,
)

try:  # typer >= 0.2x vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

GOVERNANCE = CHART / "ci" / "governance-values.yaml"
INFRA = CHART / "ci" / "infra-values.yaml"
PROD = ROOT / "manifests" / "overlays" / "prod"
#: every pod the governance part runs, by component
COMPONENTS = {"governance-migrate", "governance-api", "audit-purge", "audit-verify"}
HOOK = "pre-install,pre-upgrade"


@pytest.fixture(scope="module")
def governance() -> list[dict[str, Any]]:
    return documents(helm_template(GOVERNANCE))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(GOVERNANCE.read_text(encoding="utf-8"))
    return loaded


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


def _container(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    ((_, pod),) = pod_specs(doc)
    (container,) = pod["containers"]
    return container


def _argv(container: Mapping[str, Any]) -> list[str]:
    command = [*container["command"], *(container.get("args") or [])]
    assert command[0] == "engage", command
    return command[1:]


def test_the_governance_value_set_renders_every_object_and_each_validates(
    governance: list[dict[str, Any]],
) -> None:
    import kubernetes_validate

    names = {(d["kind"], d["metadata"]["name"]) for d in governance}
    assert names >= {
        ("ServiceAccount", "engage-governance-migrate"),
        ("NetworkPolicy", "engage-governance-migrate"),
        ("Job", "engage-governance-migrate"),
        ("ServiceAccount", "engage-governance"),
        ("Deployment", "engage-governance-api"),
        ("Service", "engage-governance-api"),
        ("PodDisruptionBudget", "engage-governance-api"),
        ("NetworkPolicy", "engage-governance-api"),
        ("NetworkPolicy", "engage-governance-database"),
        ("CronJob", "engage-audit-purge"),
        ("CronJob", "engage-audit-verify"),
        ("NetworkPolicy", "engage-audit-verify-pushgateway"),
    }
    checked = 0
    for doc in governance:
        if doc["kind"] in {"InferenceService", "PrometheusRule"}:
            continue  # checked by test_chart.py (the kserve SDK's models, the rule files)
        kubernetes_validate.validate(doc, "1.33", strict=True)
        checked += 1
    assert checked >= 20
    # the API has no /metrics: no ServiceMonitor of it
    monitors = [d for d in governance if d["kind"] == "ServiceMonitor"]
    assert all("governance" not in d["metadata"]["name"] for d in monitors)


def test_the_migration_is_a_hook_with_its_own_identity_and_policy(governance: list[dict[str, Any]]) -> None:
    job = _by(governance, "Job", "engage-governance-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == HOOK
    assert job["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert _argv(_container(job)) == ["governance", "migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "engage-governance-migrate"
    # the hook's ServiceAccount and policy come first (a lower weight): the release's do not exist yet
    for kind in ("ServiceAccount", "NetworkPolicy"):
        support = _by(governance, kind, "engage-governance-migrate")["metadata"]["annotations"]
        assert support["helm.sh/hook"] == HOOK
        assert int(support["helm.sh/hook-weight"]) < int(
            job["metadata"]["annotations"]["helm.sh/hook-weight"]
        )
        assert support["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # no other object is a hook
    hooks = {
        d["metadata"]["name"]
        for d in governance
        if "helm.sh/hook" in (d["metadata"].get("annotations") or {})
    }
    assert hooks == {"engage-governance-migrate"}


def test_every_engage_command_parses_with_the_real_cli() -> None:
    """Every container of the chart's value sets and of every overlay that runs ``engage ...`` (the
    governance pods, the pipeline's submit Job) passes a command and flags the CLI takes; the governance
    pods' env is what GovernanceSettings takes."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for name, docs in rendered_sources().items():
        for where, container in containers(docs):
            if (container.get("command") or [None])[0] != "engage":
                continue
            try:
                path, params = engage_cli_parse(_argv(container))
            except ClickException as e:
                pytest.fail(f"{name} {where}: {e.format_message()}")
            if path.split()[1] in {"governance", "audit"}:  # the pipeline's submit Job has its own env
                assert env_problems(f"{name} {where}", container.get("env") or []) == []
            seen.setdefault(path, []).append(params)
    assert set(seen) >= {
        "engage governance migrate",
        "engage governance serve",
        "engage audit purge",
        "engage audit verify",
        "engage pipeline submit",
    }
    assert {(p["host"], p["port"]) for p in seen["engage governance serve"]} == {("0.0.0.0", 8080)}
    # the chart's default retention (7 years), the value set's 10 years
    assert {p["retention_days"] for p in seen["engage audit purge"]} == {2557, 3650}
    # the value set's verify pushes its result under its trail's name; the prod overlay's does not push
    assert {(p["pushgateway"], p["trail_name"]) for p in seen["engage audit verify"]} == {
        ("prometheus-pushgateway.observability:9091", "prod-us-east-1"),
        (None, "default"),
    }
    # the database is the Secret's (env), never a flag
    assert all(p["db"] is None for path in seen if path != "engage pipeline submit" for p in seen[path])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["governance", "serve", "--host", "0.0.0.0", "--prot", "8080"], "No such option: --prot"),
        (["audit", "purge", "--retention-days", "0"], "--retention-days"),
        (["audit", "verifyy"], "No such command 'verifyy'"),
    ],
)
def test_a_command_the_cli_does_not_take_fails_the_parse(argv: list[str], message: str) -> None:
    with pytest.raises(ClickException) as raised:
        engage_cli_parse(argv)
    assert message in raised.value.format_message()


def test_the_predictor_routes_to_review_with_its_own_flags(
    governance: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    (isvc,) = (d for d in governance if d["kind"] == "InferenceService")
    (container,) = isvc["spec"]["predictor"]["containers"]
    args = server_parsers()["engage_serving.predictor"]().parse_args(container["args"])
    review = values["governance"]["review"]
    assert args.review is True
    assert args.review_band == review["band"]
    assert args.review_outlier_z == review["outlierZ"]
    assert args.governance_db is None  # the env's URL (the Secret's)
    env = {e["name"]: e for e in container["env"]}
    database = values["governance"]["database"]
    assert env["ENGAGE_GOVERNANCE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": database["existingSecret"],
        "key": database["urlKey"],
    }
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == database["passwordKey"]
    assert env_problems("predictor", container["env"]) == []
    # the explainer opens no governance store (both verify the model's signature)
    (explainer,) = isvc["spec"]["explainer"]["containers"]
    shared = {"STORAGE_URI", "ENGAGE_SIGNING_PUBLIC_KEYS_FILE", "ENGAGE_SIGNING_REQUIRED"}
    assert not {e["name"] for e in explainer["env"]} & set(env) - shared


def test_without_governance_nothing_of_it_is_rendered() -> None:
    for path in sorted((CHART / "ci").glob("*.yaml")):
        if path == GOVERNANCE:
            continue
        docs = documents(helm_template(path))
        assert not [d["metadata"]["name"] for d in docs if "governance" in d["metadata"]["name"]], path.name
        for where, container in containers(docs):
            assert "--review" not in (container.get("args") or []), f"{path.name} {where}"
            assert all(not e["name"].startswith("ENGAGE_GOVERNANCE_") for e in container.get("env") or [])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"governance.enabled": "true"},
            "governance.enabled needs governance.database.existingSecret",
        ),
        (
            {"governance.review.enabled": "true"},
            "governance.review.enabled needs governance.enabled",
        ),
        (
            {"governance.enabled": "true", "governance.database.password": "hunter2"},
            "at '/governance/database': additional properties 'password' not allowed",
        ),
        (
            {"governance.audit.purge.retentionDays": "0"},
            "at '/governance/audit/purge/retentionDays': minimum: got 0, want 1",
        ),
        ({"governance.database.cidrs[0]": "rds.internal"}, "at '/governance/database/cidrs/0'"),
        ({"governance.audit.verify.schedule": "daily"}, "at '/governance/audit/verify/schedule'"),
        (
            {"governance.audit.verify.pushgateway": "http://pushgateway:9091"},
            "at '/governance/audit/verify/pushgateway'",
        ),
        (
            {"governance.audit.verify.trailName": "postgresql://engage@db.internal/engage"},
            "at '/governance/audit/verify/trailName'",
        ),
    ],
    ids=[
        "no-secret",
        "review-alone",
        "password-value",
        "retention-0",
        "cidr",
        "schedule",
        "pushgateway-url",
        "trail-url",
    ],
)
def test_governance_refuses_to_render_without_what_it_needs(sets: dict[str, str], message: str) -> None:
    command = [tool("helm"), "template", "engage", str(CHART), "-f", str(INFRA)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    done = run(command)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_every_governance_pod_is_restricted(governance: list[dict[str, Any]]) -> None:
    docs = documents(kustomize(PROD)) + governance
    pods = [
        (where, doc)
        for doc in docs
        for where, _ in pod_specs(doc)
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") in COMPONENTS
    ]
    assert len(pods) == 2 * len(COMPONENTS)  # the value set's and the prod overlay's
    assert all_restricted_problems([doc for _, doc in pods]) == []
    for where, doc in pods:
        ((_, pod),) = pod_specs(doc)
        assert pod["automountServiceAccountToken"] is False, where
        assert {"name": "tmp", "mountPath": "/tmp"} in pod["containers"][0]["volumeMounts"], where
        assert pod["containers"][0]["resources"]["limits"], where


def test_the_network_policies_let_in_only_the_allowed_callers_and_out_only_to_the_database(
    governance: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    g = values["governance"]
    api = _by(governance, "NetworkPolicy", "engage-governance-api")["spec"]
    assert api["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "governance-api"}}
    (rule,) = api["ingress"]
    allowed = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]
    ]
    assert allowed == g["api"]["clientNamespaces"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    database = _by(governance, "NetworkPolicy", "engage-governance-database")["spec"]
    (selector,) = database["podSelector"]["matchExpressions"]
    assert set(selector["values"]) == COMPONENTS - {"governance-migrate"} | {"predictor"}
    (egress,) = database["egress"]
    assert [peer["ipBlock"]["cidr"] for peer in egress["to"]] == g["database"]["cidrs"]
    assert egress["ports"] == [{"protocol": "TCP", "port": 5432}]
    # without review routing the predictor gets no way to the database
    docs = documents(helm_template(GOVERNANCE, sets={"governance.review.enabled": "false"}))
    spec = _by(docs, "NetworkPolicy", "engage-governance-database")["spec"]
    assert "predictor" not in spec["podSelector"]["matchExpressions"][0]["values"]


@pytest.mark.parametrize(("replicas", "budget"), [(1, False), (2, True)])
def test_the_api_has_a_budget_only_with_more_than_one_replica(replicas: int, budget: bool) -> None:
    docs = documents(helm_template(GOVERNANCE, sets={"governance.api.replicas": str(replicas)}))
    budgets = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert ("engage-governance-api" in budgets) is budget
    assert _by(docs, "Deployment", "engage-governance-api")["spec"]["replicas"] == replicas


def test_the_audit_cronjobs_run_daily_one_at_a_time(governance: list[dict[str, Any]]) -> None:
    for name in ("engage-audit-purge", "engage-audit-verify"):
        spec = _by(governance, "CronJob", name)["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert len(spec["schedule"].split()) == 5
        assert spec["schedule"].split()[2:] == ["*", "*", "*"]
        assert spec["failedJobsHistoryLimit"] >= 1  # the failed Job is the signal
    # verify is not retried: one failed Job means a broken chain or an unreachable database
    verify = _by(governance, "CronJob", "engage-audit-verify")["spec"]["jobTemplate"]["spec"]
    assert verify["backoffLimit"] == 0


def test_the_prod_overlay_carries_the_generated_governance_component() -> None:
    docs = documents(kustomize(PROD))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "engage-governance-api") in names
    assert ("Job", "engage-governance-migrate") in names
    secret_refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, c in containers(docs)
        for e in c.get("env") or []
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    assert secret_refs == {"engage-governance-db"}


def test_the_verify_job_pushes_to_the_pushgateway_only_when_one_is_set(
    governance: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    """With governance.audit.verify.pushgateway: --pushgateway and --trail-name, and an egress policy to
    the Pushgateway's namespace and port; without: neither. The trail name the schema takes is the one
    the CLI takes."""
    import json

    from engage.cli._audit import TRAIL_NAME

    verify = values["governance"]["audit"]["verify"]
    job = _by(governance, "CronJob", "engage-audit-verify")
    assert _argv(_container(job)) == [
        "audit", "verify", "--pushgateway", verify["pushgateway"], "--trail-name", verify["trailName"],
    ]  # fmt: skip
    policy = _by(governance, "NetworkPolicy", "engage-audit-verify-pushgateway")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "audit-verify"}}
    assert policy["policyTypes"] == ["Egress"]
    (egress,) = policy["egress"]
    assert egress["to"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": verify["pushgatewayNamespace"]}
            }
        }
    ]
    assert egress["ports"] == [{"protocol": "TCP", "port": int(verify["pushgateway"].rsplit(":", 1)[1])}]
    # the policy selects the verify Job's pods
    pod_labels = job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/component"] == "audit-verify"

    quiet = documents(helm_template(GOVERNANCE, sets={"governance.audit.verify.pushgateway": ""}))
    assert _argv(_container(_by(quiet, "CronJob", "engage-audit-verify"))) == ["audit", "verify"]
    assert not [d for d in quiet if d["metadata"]["name"] == "engage-audit-verify-pushgateway"]
    open_network = documents(helm_template(GOVERNANCE, sets={"networkPolicy.enabled": "false"}))
    assert "--pushgateway" in _argv(_container(_by(open_network, "CronJob", "engage-audit-verify")))
    assert not [d for d in open_network if d["kind"] == "NetworkPolicy"]

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    trail = schema["properties"]["governance"]["properties"]["audit"]["properties"]["verify"]["properties"]
    assert trail["trailName"]["pattern"] == f"^{TRAIL_NAME.pattern}$"
