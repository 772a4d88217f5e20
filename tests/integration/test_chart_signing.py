"""Signed model versions in charts/engage and manifests/: every server, in the chart with each ci/ values
file and in every overlay, verifies against the mounted public keys with ENGAGE_SIGNING_REQUIRED; no pod
is given a private key; the chart's own Secret holds keys the servers read; the schema refuses a private
key; the chart's InferenceService with another Secret is still `engage deploy`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_support import (
    CHART,
    containers,
    documents,
    helm_template,
    pod_specs,
    rendered_sources,
    run,
    tool,
)

INFRA_VALUES = CHART / "ci" / "infra-values.yaml"
#: the ci values file giving two public keys as values (a rotation), and its Secret's name
ROTATION_VALUES = CHART / "ci" / "knative-values.yaml"
HEX = "5e" * 32
STORAGE = f"s3://engage-models/customers/versions/{HEX}/model"


def _values(path: Path) -> dict[str, Any]:
    chart = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["signing"]
    given = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {**chart, **(given.get("signing") or {})}


@pytest.fixture(scope="module")
def sources() -> dict[str, list[dict[str, Any]]]:
    return rendered_sources()


def test_every_server_verifies_against_the_mounted_public_keys(
    sources: dict[str, list[dict[str, Any]]],
) -> None:
    servers = 0
    for name, docs in sources.items():
        secret = (
            _values(CHART / "ci" / name.removeprefix("chart:"))["publicKeysSecret"]
            if name.startswith("chart:")
            else "engage-signing-public-keys"
        )
        for doc in docs:
            for where, pod in pod_specs(doc):
                volumes = {v["name"]: v for v in pod.get("volumes") or []}
                for container in pod.get("containers") or []:
                    if (container.get("command") or [])[:3] not in (["python", "-m", m] for m in SERVERS):
                        continue
                    servers += 1
                    at = f"{name} {where}/{container['name']}"
                    env = {e["name"]: e.get("value") for e in container.get("env") or []}
                    assert env.get("ENGAGE_SIGNING_REQUIRED") == "true", at
                    mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
                    mount = mounts[env["ENGAGE_SIGNING_PUBLIC_KEYS_FILE"]]
                    assert mount.get("readOnly") is True, at
                    assert volumes[mount["name"]]["secret"]["secretName"] == secret, at
    assert servers >= 10  # the drift detector everywhere, predictor and explainer where there is an ISVC


SERVERS = ("engage_serving.predictor", "engage_serving.explainer", "engage_serving.drift_detector")


def test_no_pod_is_given_a_private_key(sources: dict[str, list[dict[str, Any]]]) -> None:
    for name, docs in sources.items():
        for where, container in containers(docs):
            names = {e["name"] for e in container.get("env") or []}
            assert not names & {"ENGAGE_SIGNING_KEY", "ENGAGE_SIGNING_KEY_FILE"}, f"{name} {where}"
        for doc in docs:
            if doc["kind"] == "Secret":
                assert "PRIVATE" not in yaml.safe_dump(doc), f"{name} Secret/{doc['metadata']['name']}"


def test_the_charts_secret_holds_the_keys_a_server_reads(tmp_path: Path) -> None:
    from engage.signing import SigningSettings, load_keyring

    values = _values(ROTATION_VALUES)
    docs = documents(helm_template(INFRA_VALUES, ROTATION_VALUES))
    (secret,) = (
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == values["publicKeysSecret"]
    )
    mounted = tmp_path / "signing"  # what the kubelet mounts: one file per entry
    mounted.mkdir()
    for entry, text in secret["stringData"].items():
        (mounted / entry).write_text(text, encoding="utf-8")
    ring = load_keyring(SigningSettings(public_keys_file=mounted, required=True))
    assert len(ring.keys) == 2 == values["publicKeys"].count("BEGIN PUBLIC KEY")
    # without publicKeys the Secret is made outside the chart: none rendered
    assert not [d for d in documents(helm_template(INFRA_VALUES)) if d["kind"] == "Secret"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        # pragma: allowlist nextline secret
        ({"signing.publicKeys": "-----BEGIN PRIVATE KEY-----"}, "at '/signing/publicKeys'"),
        ({"signing.publicKeys": "ssh-ed25519 AAAA"}, "at '/signing/publicKeys'"),
        # pragma: allowlist nextline secret
        ({"signing.publicKeysSecret": "Engage_Keys"}, "at '/signing/publicKeysSecret'"),
    ],
)
def test_bad_signing_values_fail_with_the_schemas_message(sets: dict[str, str], message: str) -> None:
    command = [tool("helm"), "template", "engage", str(CHART), "-f", str(INFRA_VALUES)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    done = run(command)
    assert done.returncode != 0
    assert message in done.stderr


def test_engage_deploy_mounts_the_same_secret_as_the_chart(tmp_path: Path) -> None:
    from engage_serving.deploy import DeploySettings, chart_values, render_inference_service

    settings = DeploySettings(signing_public_keys_secret="engage-model-keys")
    expected = render_inference_service(HEX, STORAGE, settings)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(HEX, STORAGE, settings)))
    (isvc,) = (d for d in documents(helm_template(INFRA_VALUES, values)) if d["kind"] == "InferenceService")
    assert isvc == expected
    volumes = expected["spec"]["predictor"]["volumes"]
    # pragma: allowlist nextline secret
    assert {"name": "signing-keys", "secret": {"secretName": "engage-model-keys"}} in volumes
