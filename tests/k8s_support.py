"""Real helm and kubectl for the tests, the rendered objects of the chart and of every overlay, and the
checks those objects are held to (Pod Security "restricted", the servers' flags and settings, the engage CLI's
commands).

Shared by ``tests/integration/test_chart.py`` and ``tests/integration/test_chart_governance.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "engage"
CHART_VALUES = sorted((CHART / "ci").glob("*.yaml"))
OVERLAYS = sorted(p.parent for p in (ROOT / "manifests" / "overlays").glob("*/kustomization.yaml"))
TOOLS = ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """A real ``helm`` or ``kubectl``: on PATH, else fetched into ``.tools/bin`` (scripts/fetch_k8s_tools.py)."""
    found = shutil.which(name, path=str(TOOLS)) or shutil.which(name)
    if found is None:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_k8s_tools.py")], check=True)
        found = str(TOOLS / name)
    return found


def run(command: list[str], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_template(*values: Path, sets: Mapping[str, str] | None = None, namespace: str = "engage") -> str:
    command = [tool("helm"), "template", "engage", str(CHART), "--namespace", namespace]
    for path in values:
        command += ["-f", str(path)]
    for key, value in (sets or {}).items():
        command += ["--set", f"{key}={value}"]
    done = run(command)
    if done.returncode != 0:
        raise AssertionError(f"helm template failed:\n{done.stderr}")
    return done.stdout


def kustomize(overlay: Path) -> str:
    done = run([tool("kubectl"), "kustomize", str(overlay)])
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{done.stderr}")
    return done.stdout


def rendered_sources() -> dict[str, list[dict[str, Any]]]:
    """Every object Engage ships, by where it comes from: the chart with each ci/ values file, and each
    kustomize overlay."""
    sources = {f"chart:{p.name}": documents(helm_template(p)) for p in CHART_VALUES}
    sources.update({f"overlay:{p.name}": documents(kustomize(p)) for p in OVERLAYS})
    return sources


# --- Pod Security "restricted" (+ a read-only root filesystem) ------------------------------------------

#: volume types the restricted profile allows
_RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def pod_specs(doc: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where, pod spec)`` of every pod an object makes: workloads, jobs, and an InferenceService's
    predictor / explainer / transformer (whose spec is a pod spec)."""
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    spec = doc.get("spec") or {}
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield f"{kind}/{name}", spec["template"]["spec"]
    elif kind == "CronJob":
        yield f"{kind}/{name}", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield f"{kind}/{name}", spec
    elif kind == "InferenceService":
        for component in ("predictor", "explainer", "transformer"):
            if component in spec:
                yield f"{kind}/{name}.{component}", spec[component]


def restricted_problems(where: str, pod: Mapping[str, Any]) -> list[str]:
    """What keeps ``pod`` from Pod Security "restricted" with a read-only root filesystem."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            problems.append(f"{where}: {host}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"{where}: volume {volume['name']} of type {sorted(kinds)}")
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    if not containers:
        problems.append(f"{where}: no containers")
    for container in containers:
        at = f"{where}/{container.get('name')}"
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{at}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{at}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{at}: adds capabilities {caps['add']}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            problems.append(f"{at}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{at}: runs as uid 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{at}: seccompProfile is {seccomp!r}, not RuntimeDefault")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: readOnlyRootFilesystem is not true")
    return problems


def all_restricted_problems(docs: list[dict[str, Any]]) -> list[str]:
    return [p for doc in docs for where, pod in pod_specs(doc) for p in restricted_problems(where, pod)]


# --- the servers' flags and settings, the engage CLI's commands --------------------------------------

#: variables the servers' containers may carry that are no Engage settings
FOREIGN_ENV = ("STORAGE_URI", "AWS_", "PGPASSWORD")


def server_parsers() -> dict[str, Any]:
    """``python -m <module>`` -> that server's own argument parser."""
    from engage_serving.drift_detector import drift_parser
    from engage_serving.explainer import explainer_parser
    from engage_serving.predictor.__main__ import predictor_parser

    return {
        "engage_serving.predictor": predictor_parser,
        "engage_serving.explainer": explainer_parser,
        "engage_serving.drift_detector": drift_parser,
    }


def settings_classes() -> dict[str, Any]:
    """Environment prefix -> the settings class that reads it."""
    from engage.drift import DriftSettings
    from engage.explain import ExplainSettings
    from engage.governance import GovernanceSettings
    from engage.registry import RegistrySettings
    from engage.settings import RunSettings
    from engage.signing import SigningSettings
    from engage_serving._settings import ServingSettings
    from engage_serving.deploy import DeploySettings

    classes = (
        ServingSettings,
        SigningSettings,
        DriftSettings,
        ExplainSettings,
        RegistrySettings,
        RunSettings,
        DeploySettings,
        GovernanceSettings,
    )
    return {c.model_config["env_prefix"]: c for c in classes}


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for doc in docs:
        for where, pod in pod_specs(doc):
            for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
                yield f"{where}/{container.get('name')}", container


def env_problems(where: str, env: list[Mapping[str, Any]]) -> list[str]:
    """Each ``ENGAGE_*`` variable must be a field of the settings class of its prefix and hold a value
    that class accepts; anything else must be a known foreign variable."""
    from pydantic import ValidationError

    classes = settings_classes()
    problems: list[str] = []
    for var in env:
        name, value = var["name"], var.get("value")
        prefix = next((p for p in classes if name.startswith(p)), None)
        if prefix is None:
            if not name.startswith(FOREIGN_ENV):
                problems.append(f"{where}: env {name} is no Engage setting nor a known variable")
            continue
        cls = classes[prefix]
        field = name.removeprefix(prefix).lower()
        if field not in cls.model_fields:
            problems.append(f"{where}: env {name}: {cls.__name__} has no field {field!r}")
            continue
        if value is None:  # from a secret or a field reference: the value is the cluster's
            continue
        saved = os.environ.get(name)
        os.environ[name] = str(value)
        try:
            cls()
        except ValidationError as e:
            problems.append(f"{where}: env {name}={value!r}: {e.errors()[0]['msg']}")
        finally:
            if saved is None:
                del os.environ[name]
            else:
                os.environ[name] = saved
    return problems


def engage_cli_parse(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``engage <argv>`` with the real CLI (the typer app and its plugins, nothing run): the
    command's path and its parameters; an unknown command, an unknown option or a bad value raises the
    CLI's own usage error."""
    import typer

    from engage.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("engage", list(argv))
    while hasattr(command, "resolve_command"):  # a group: down to the subcommand
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None
        assert name is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        command = sub
    return ctx.command_path, ctx.params
