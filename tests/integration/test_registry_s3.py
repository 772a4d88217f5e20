"""The model registry on a real S3 endpoint (moto's server on loopback): publish, promote, fetch, audit,
and the commit marker that keeps a half-copied version invisible where a "move" is copy + delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engage.errors import ArtifactError, RegistryError
from engage.registry import Registry
from engage.registry._store import Store
from tests.unit.test_registry import build_bundles

pytestmark = pytest.mark.slow  # trains a small model (a few seconds) and runs an S3 server

BUCKET = "models"
CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, with one bucket; stopped after the module."""
    from tests.cloudwatch_support import moto_server

    with moto_server() as url:
        _client(url).create_bucket(Bucket=BUCKET)
        yield url


def _client(url: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def _keys(url: str, prefix: str) -> list[str]:
    pages = _client(url).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def registry(endpoint: str, request: pytest.FixtureRequest) -> Registry:
    """A registry of its own per test: s3://models/<test name>."""
    return Registry(
        f"s3://{BUCKET}/{request.node.name}",
        storage_options={"client_kwargs": {"endpoint_url": endpoint}, **CREDENTIALS},
    )


def test_publish_promote_fetch_audit_on_s3(
    registry: Registry, endpoint: str, bundles: list[Path], tmp_path: Path
) -> None:
    from engage.training import load_bundle

    prefix = f"{registry.uri.removeprefix(f's3://{BUCKET}/')}/customers"
    card = tmp_path / "model_card.md"
    card.write_text("# card\n", encoding="utf-8")
    drift = tmp_path / "drift"
    drift.mkdir()
    (drift / "reference.json").write_text("{}", encoding="utf-8")

    a = registry.publish(
        bundles[0], attachments={"model_card.md": card, "drift_reference": drift}, metadata={"run": "r1"}
    )
    assert a.uri == f"s3://{BUCKET}/{prefix}/versions/{a.hex}"
    stored = _keys(endpoint, f"{prefix}/versions/")
    assert f"{prefix}/versions/{a.hex}/version.json" in stored
    assert f"{prefix}/versions/{a.hex}/drift_reference/reference.json" in stored
    assert not [k for k in stored if "/.staging-" in k]  # copied into place, then deleted
    assert registry.publish(bundles[0]) == a  # idempotent
    assert _keys(endpoint, f"{prefix}/versions/") == stored

    b = registry.publish(bundles[1])
    assert [v.id for v in registry.versions()] == [b.id, a.id]
    assert registry.get(a.short_id) == registry.get(a.id)

    registry.promote(a.id, reason="first", actor="alice")
    registry.promote(b.id, reason="second", actor="bob")
    assert registry.aliases() == {"previous": a.id, "production": b.id}
    registry.rollback(reason="regression", actor="carol")
    assert registry.alias("production") == registry.get(a.id)
    with pytest.raises(RegistryError, match=f"no version or alias 'staging' in registry s3://{BUCKET}/"):
        registry.get("staging")

    dest = registry.fetch("production", tmp_path / "serving")
    assert load_bundle(dest).version == a.id

    records = registry.audit()
    assert [(r["event"], r.get("alias"), r.get("actor")) for r in records] == [
        ("publish", None, "engage"),
        ("publish", None, "engage"),
        ("alias", "production", "alice"),
        ("alias", "previous", "bob"),
        ("alias", "production", "bob"),
        ("rollback", None, "carol"),
        ("alias", "production", "carol"),
        ("alias", "previous", "carol"),
    ]
    assert _keys(endpoint, f"{prefix}/audit/") == []  # the records are on the audit trail, not in S3
    assert registry.trail.verify().ok


def test_uncommitted_versions_are_invisible_on_s3(
    registry: Registry, endpoint: str, bundles: list[Path], tmp_path: Path
) -> None:
    a = registry.publish(bundles[0])
    assert registry.versions() == [a]
    prefix = f"{registry.location.removeprefix(f's3://{BUCKET}/')}"
    client = _client(endpoint)
    # another process staged a publish, and a third died half-way through its copy into place
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/versions/.staging-x/model/manifest.json", Body=b"{}")
    half = bundles[1] / "manifest.json"
    hex_b = _sha256(half)
    client.upload_file(str(half), BUCKET, f"{prefix}/versions/{hex_b}/model/manifest.json")

    assert registry.versions() == [a]
    with pytest.raises(RegistryError, match=r"versions: 1, aliases: none"):
        registry.get(hex_b)

    b = registry.publish(bundles[1])  # the same content again completes and commits the folder
    assert b.hex == hex_b
    assert [v.id for v in Registry(registry.uri, storage_options=_options(endpoint)).versions()] == [
        b.id,
        a.id,
    ]
    registry.fetch(b.id, tmp_path / "b")

    # an alias another process sets is seen at once: listings are never answered from a stale cache
    assert registry.aliases() == {}
    pointer = {
        "alias": "candidate",
        "version": b.id,
        "set_at": "2026-03-01T06:00:00Z",
        "actor": "pipeline",
        "reason": "trained",
    }
    client.put_object(
        Bucket=BUCKET, Key=f"{prefix}/aliases/candidate.json", Body=json.dumps(pointer).encode()
    )
    assert registry.aliases() == {"candidate": b.id}
    assert registry.get("candidate").aliases == ("candidate",)


def test_a_failed_s3_publish_leaves_nothing(
    registry: Registry, endpoint: str, bundles: list[Path], monkeypatch: Any
) -> None:
    real_copy = Store.put_file
    calls: list[str] = []

    def copy_then_fail(self: Store, source: Path, path: str) -> None:
        if calls:
            raise ConnectionError("connection reset by peer")
        calls.append(path)
        real_copy(self, source, path)

    monkeypatch.setattr(Store, "put_file", copy_then_fail)
    with pytest.raises(ConnectionError):
        registry.publish(bundles[2])
    assert calls
    assert registry.versions() == []
    assert _keys(endpoint, registry.location.removeprefix(f"s3://{BUCKET}/")) == []


def test_fetch_refuses_a_changed_object(
    registry: Registry, endpoint: str, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    key = f"{registry.location.removeprefix(f's3://{BUCKET}/')}/versions/{version.hex}/model/features.json"
    client = _client(endpoint)
    data = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=key, Body=data.replace(b'"', b"'", 1))

    with pytest.raises(ArtifactError, match=f"^s3://{BUCKET}/{key}: SHA-256 mismatch"):
        registry.fetch(version.id, tmp_path / "fetched")
    assert not (tmp_path / "fetched").exists()


def test_cli_reads_an_s3_registry_from_the_environment(
    registry: Registry, endpoint: str, bundles: list[Path], monkeypatch: Any
) -> None:
    from typer.testing import CliRunner

    from engage.cli._registry import app

    version = registry.publish(bundles[0], metadata={"policy_verdict": "pass"})
    registry.promote(version.id, reason="first")
    monkeypatch.setenv("ENGAGE_REGISTRY_URI", registry.uri)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)  # how a pod reaches MinIO or another S3 store
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert version.short_id in result.output
    assert "production" in result.output


def _options(endpoint: str) -> dict[str, Any]:
    return {"client_kwargs": {"endpoint_url": endpoint}, **CREDENTIALS}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
