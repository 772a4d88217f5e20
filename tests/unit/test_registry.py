"""The model registry on a local folder: publish, refs, aliases and their audit trail, atomicity, fetch, CLI.

The bundles are real: the churn head trained once on 2,000 generated rows (20 rounds), saved three times
with different manifest metadata, so the three versions differ in id and share everything else.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engage.errors import ArtifactError, RegistryError
from engage.registry import ModelVersion, Registry, RegistrySettings
from engage.registry._store import Store
from engage.signing import SignatureError, SigningSettings, read_signature
from tests.conftest import AS_OF

METADATA = {
    "metrics": {"churn": {"auc_roc": 0.8312, "ece": 0.0123}},
    "data_sha256": "ab" * 32,
    "pipeline_run_id": "run-42",
    "policy_verdict": "pass",
}


def build_bundles(root: Path, count: int = 3) -> list[Path]:
    """``count`` model bundles of one trained churn head, each with its own manifest (so its own id)."""
    from engage.contract import load_contract
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.training import TrainConfig, train

    frame = generate_customers(SyntheticConfig(rows=2_000, seed=21, as_of=AS_OF)).frame
    result = train(frame, load_contract(), config=TrainConfig(max_rounds=20), heads=["churn"])
    bundle = result.bundle("xgboost")
    return [
        bundle.save(root / f"bundle{i}", metadata={**bundle.metadata, "variant": i}) for i in range(count)
    ]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return build_bundles(tmp_path_factory.mktemp("bundles"))


#: the registry's folder: brackets, as in parametrized pytest folders, are no glob patterns to the registry
REG = "reg[1]"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / REG))


@pytest.fixture
def attachments(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "attachments"
    (src / "drift").mkdir(parents=True)
    (src / "evaluation.json").write_text('{"auc_roc": 0.83}\n', encoding="utf-8")
    (src / "model_card.md").write_text("# Model card\n", encoding="utf-8")
    (src / "drift" / "reference.parquet").write_bytes(b"PAR1")
    (src / "drift" / "nested").mkdir()
    (src / "drift" / "nested" / "stats.json").write_text("{}", encoding="utf-8")
    return {
        "evaluation.json": src / "evaluation.json",
        "model_card.md": src / "model_card.md",
        "drift_reference/": src / "drift",
    }


def files_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ---- publish and refs ------------------------------------------------------------------------------


def test_publish_then_get_by_id_prefix_and_alias(
    registry: Registry, bundles: list[Path], attachments: dict[str, Path], tmp_path: Path
) -> None:
    from engage.training import bundle_version

    version = registry.publish(bundles[0], attachments=attachments, metadata=METADATA)

    assert version.id == bundle_version(bundles[0])  # content-addressed: the training's own version
    assert version.short_id == version.hex[:12]
    assert version.model == "customers"
    assert version.metadata == METADATA
    assert version.attachments == ("drift_reference", "evaluation.json", "model_card.md")
    assert version.aliases == ()
    folder = tmp_path / REG / "customers" / "versions" / version.hex
    assert version.uri == f"file://{folder}"
    assert files_below(folder) == sorted(
        [
            "drift_reference/nested/stats.json",
            "drift_reference/reference.parquet",
            "evaluation.json",
            "model_card.md",
            "version.json",
            "model/signature.json",
            *(f"model/{f}" for f in files_below(bundles[0])),
        ]
    )
    stored = json.loads((folder / "version.json").read_text(encoding="utf-8"))
    assert stored["id"] == version.id
    assert "aliases" not in stored  # aliases move: they are read from aliases/, never frozen here

    assert registry.get(version.id) == version
    assert registry.get(version.short_id) == version
    assert registry.get(version.hex[:20].upper()) == version
    assert registry.get(f"sha256:{version.hex[:16]}") == version
    assert registry.alias("candidate") is None
    move = registry.set_alias("candidate", version.short_id, reason="trained by run-42", actor="ci")
    assert (move.alias, move.from_version, move.to_version, move.changed) == (
        "candidate",
        None,
        version.id,
        True,
    )
    assert registry.get("candidate") == registry.alias("candidate")
    assert registry.get("candidate").aliases == ("candidate",)


def test_publish_is_idempotent(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    first = registry.publish(bundles[0], metadata={"pipeline_run_id": "run-1"})
    before = files_below(tmp_path / REG)

    again = registry.publish(bundles[0], metadata={"pipeline_run_id": "run-2"})

    assert again == first
    assert again.metadata == {"pipeline_run_id": "run-1"}  # the first publish holds; nothing rewritten
    assert files_below(tmp_path / REG) == before
    assert [r["event"] for r in registry.audit()] == ["publish"]


def test_versions_are_listed_newest_first(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    published = [registry.publish(b) for b in bundles]
    assert [v.id for v in registry.versions()] == [v.id for v in reversed(published)]
    assert registry.uri == f"file://{tmp_path / REG}"
    assert registry.location == f"file://{tmp_path / REG / 'customers'}"
    assert Registry(registry.uri).versions() == registry.versions()  # file:// URIs work as well
    assert Registry(registry.uri, model="telco").versions() == []


def test_unknown_ref_names_the_ref_and_what_exists(registry: Registry, bundles: list[Path]) -> None:
    version = registry.publish(bundles[0])
    registry.promote(version.id, reason="first")

    with pytest.raises(RegistryError) as caught:
        registry.get("foo")
    assert str(caught.value) == (
        f"no version or alias 'foo' in registry {registry.location} (versions: 1, aliases: production)"
    )
    assert caught.value.http_status == 404 == RegistryError.http_status
    with pytest.raises(RegistryError, match="no version or alias 'fedcba9876543210'"):
        registry.get("fedcba9876543210")
    with pytest.raises(RegistryError, match="no version or alias 'sha256:"):
        registry.get("sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="too short") as short:
        registry.get(version.hex[:8])
    assert short.value.http_status == 400


def test_an_ambiguous_prefix_is_refused(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    real = registry.publish(bundles[0])
    twin_hex = real.hex[:14] + "f" * 50 if real.hex[14] != "f" else real.hex[:14] + "e" * 50
    twin = real.model_copy(update={"id": f"sha256:{twin_hex}", "uri": "", "aliases": ()})
    twin_folder = tmp_path / REG / "customers" / "versions" / twin_hex
    twin_folder.mkdir()
    (twin_folder / "version.json").write_text(
        twin.model_dump_json(exclude={"uri", "aliases"}), encoding="utf-8"
    )

    with pytest.raises(RegistryError, match=r"is ambiguous .*: it matches 2 versions") as caught:
        registry.get(real.hex[:12])
    assert real.short_id in str(caught.value)
    assert registry.get(real.hex[:15]) == registry.get(real.id)  # one more character settles it


# ---- aliases and audit -----------------------------------------------------------------------------


def test_promote_and_rollback_move_aliases_with_an_audit_trail(
    registry: Registry, bundles: list[Path]
) -> None:
    a, b = (registry.publish(x) for x in bundles[:2])

    first = registry.promote(a.id, reason="first model", actor="alice")
    assert [(m.alias, m.from_version, m.to_version) for m in first] == [("production", None, a.id)]

    second = registry.promote(b.short_id, reason="better auc", actor="bob")
    assert [(m.alias, m.from_version, m.to_version, m.changed) for m in second] == [
        ("previous", None, a.id, True),
        ("production", a.id, b.id, True),
    ]
    assert registry.aliases() == {"previous": a.id, "production": b.id}
    assert registry.get("production").aliases == ("production",)

    again = registry.promote("production", reason="re-run", actor="bob")
    assert [(m.alias, m.from_version, m.to_version, m.changed) for m in again] == [
        ("production", b.id, b.id, False)
    ]
    assert registry.aliases() == {"previous": a.id, "production": b.id}  # previous kept its target

    back = registry.rollback(reason="latency regression", actor="carol")
    assert [(m.alias, m.from_version, m.to_version) for m in back] == [
        ("production", b.id, a.id),
        ("previous", a.id, b.id),
    ]
    assert registry.alias("production") == registry.get(a.id)
    assert registry.get(a.id).aliases == ("production",)
    assert registry.get(b.id).aliases == ("previous",)

    moves = [r for r in registry.audit() if r["event"] == "alias"]
    assert [(r["alias"], r["from"], r["to"], r["actor"], r["reason"]) for r in moves] == [
        ("production", None, a.id, "alice", "first model"),
        ("previous", None, a.id, "bob", "better auc"),
        ("production", a.id, b.id, "bob", "better auc"),
        ("production", b.id, b.id, "bob", "re-run"),
        ("production", b.id, a.id, "carol", "latency regression"),
        ("previous", a.id, b.id, "carol", "latency regression"),
    ]
    assert [m.audit_key for m in [*first, *second, *again, *back]] == [r["key"] for r in moves]
    assert all(r["model"] == "customers" and r["at"].endswith("+00:00") for r in moves)


def test_rollback_needs_a_previous_version(registry: Registry, bundles: list[Path]) -> None:
    with pytest.raises(RegistryError, match=r"nothing to roll back to .*no production alias"):
        registry.rollback(reason="oops")
    registry.promote(registry.publish(bundles[0]).id, reason="first")
    with pytest.raises(RegistryError, match=r"nothing to roll back to .*no previous alias") as caught:
        registry.rollback(reason="oops")
    assert caught.value.http_status == 409


def test_alias_names_and_reasons_are_checked(registry: Registry, bundles: list[Path]) -> None:
    version = registry.publish(bundles[0])
    for bad in ("deadbeef0123", "../production", "production.json", ""):
        with pytest.raises(RegistryError, match="alias name") as caught:
            registry.set_alias(bad, version.id, reason="x")
        assert caught.value.http_status == 400
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.set_alias("candidate", version.id, reason=" ")
    assert registry.aliases() == {}


def test_records_go_to_the_audit_trail(registry: Registry, tmp_path: Path) -> None:
    keys = [registry.record({"event": "note", "n": i, "actor": "dave"}) for i in range(3)]

    assert all(k.startswith("seq:") for k in keys)
    assert len(set(keys)) == 3
    records = registry.audit()
    assert [r["n"] for r in records] == [0, 1, 2]  # oldest first
    assert [r["key"] for r in records] == keys
    assert {r["model"] for r in records} == {"customers"}
    assert not (tmp_path / REG / "customers" / "audit").exists()  # one trail: nothing beside the versions
    entries = registry.trail.records(subject=registry.subject)
    assert [(e.event, e.actor) for e in entries] == [("note", "dave")] * 3
    assert registry.trail.verify().ok
    with pytest.raises(RegistryError, match="audit event is not JSON"):
        registry.record({"when": object()})


def test_nothing_is_published_or_moved_unrecorded(bundles: list[Path], tmp_path: Path) -> None:
    """The governance database down: a publish or an alias move fails with a 503 naming the database,
    and nothing becomes visible (the record is written before the version's marker, before the alias)."""
    from engage.errors import GovernanceError
    from engage.governance import AuditTrail, Database

    down = AuditTrail(Database("postgresql+psycopg://engage@127.0.0.1:1/governance"))
    offline = Registry(str(tmp_path / REG), trail=down)
    with pytest.raises(GovernanceError, match=r"governance database .*127\.0\.0\.1:1") as caught:
        offline.publish(bundles[0])
    assert caught.value.http_status == 503
    online = Registry(str(tmp_path / REG))
    assert online.versions() == []
    assert _leftovers(tmp_path) == []
    version = online.publish(bundles[0])
    with pytest.raises(GovernanceError):
        offline.promote(version.id, reason="release", actor="alice")
    assert online.aliases() == {}


def test_legacy_audit_files_are_listed_and_removed(registry: Registry, tmp_path: Path) -> None:
    folder = tmp_path / REG / "customers" / "audit"
    folder.mkdir(parents=True)
    (folder / "20250101T000000.000000Z-a.json").write_text('{"event": "publish", "actor": "old"}')
    (folder / "20250102T000000.000000Z-b.json").write_text('{"event": "alias", "actor": "old"}')
    legacy = registry.legacy_audit()
    assert [(k, r["event"]) for k, r in legacy] == [
        ("audit/20250101T000000.000000Z-a.json", "publish"),
        ("audit/20250102T000000.000000Z-b.json", "alias"),
    ]
    registry.remove_legacy_audit(legacy[0][0])
    assert [k for k, _ in registry.legacy_audit()] == [legacy[1][0]]
    with pytest.raises(RegistryError, match="not a legacy audit record"):
        registry.remove_legacy_audit("versions/x/version.json")


# ---- atomicity -------------------------------------------------------------------------------------


def _leftovers(tmp_path: Path) -> list[str]:
    versions = tmp_path / REG / "customers" / "versions"
    return sorted(p.name for p in versions.iterdir()) if versions.exists() else []


def test_a_publish_failing_midway_leaves_nothing(
    registry: Registry, bundles: list[Path], attachments: dict[str, Path], tmp_path: Path, monkeypatch: Any
) -> None:
    real_put = Store.put_file
    calls: list[str] = []

    def put_then_fail(self: Store, source: Path, path: str) -> None:
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(path)
        real_put(self, source, path)

    monkeypatch.setattr(Store, "put_file", put_then_fail)
    with pytest.raises(OSError, match="No space left"):
        registry.publish(bundles[0], attachments=attachments)
    assert len(calls) == 1  # one file was written before the failure
    assert registry.versions() == []
    assert _leftovers(tmp_path) == []  # the staging prefix is gone
    assert registry.audit() == []


def test_a_publish_failing_at_the_commit_leaves_nothing(
    registry: Registry, bundles: list[Path], tmp_path: Path, monkeypatch: Any
) -> None:
    real_write = Store.write

    def refuse_marker(self: Store, path: str, data: bytes) -> None:
        if path.endswith("/version.json"):
            raise OSError(5, "Input/output error")
        real_write(self, path, data)

    monkeypatch.setattr(Store, "write", refuse_marker)
    with pytest.raises(OSError, match="Input/output error"):
        registry.publish(bundles[0])
    assert registry.versions() == []
    assert _leftovers(tmp_path) == []  # the moved folder this publish created is removed too


def test_refused_inputs_write_nothing(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    with pytest.raises(
        RegistryError, match=r"attachment 'fairness\.json': .*: no such file or folder"
    ) as caught:
        registry.publish(bundles[0], attachments={"fairness.json": tmp_path / "absent.json"})
    assert caught.value.http_status == 400
    for name in ("model", "version.json", "a/b", ".hidden"):
        with pytest.raises(RegistryError, match="attachment name"):
            registry.publish(bundles[0], attachments={name: bundles[1] / "features.json"})
    with pytest.raises(RegistryError, match="publish metadata is not JSON"):
        registry.publish(bundles[0], metadata={"path": tmp_path})

    tampered = tmp_path / "tampered"
    shutil.copytree(bundles[0], tampered)
    model = tampered / "churn" / "model.ubj"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"churn/model\.ubj: SHA-256 mismatch"):
        registry.publish(tampered)
    assert not (tmp_path / REG).exists()


def test_a_version_folder_without_its_marker_is_invisible_and_repaired(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    folder = tmp_path / REG / "customers" / "versions" / version.hex
    (folder / "version.json").unlink()  # as if the publisher died between the move and the commit
    (folder / "model" / "churn" / "model.ubj").unlink()  # ... with the copy incomplete (object store)

    assert registry.versions() == []
    with pytest.raises(RegistryError, match="versions: 0"):
        registry.get(version.id)

    again = registry.publish(bundles[0])  # publishing the same content completes the folder
    assert again.id == version.id
    assert registry.versions() == [again]
    registry.fetch(again.id, tmp_path / "fetched")  # and it verifies


# ---- fetch -----------------------------------------------------------------------------------------


def test_fetch_copies_and_verifies(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    from engage.training import load_bundle

    version = registry.publish(bundles[0])
    registry.promote(version.id, reason="first")
    dest = registry.fetch("production", tmp_path / "serving" / "model")

    assert files_below(dest) == sorted([*files_below(bundles[0]), "signature.json"])
    assert load_bundle(dest).version == version.id
    with pytest.raises(RegistryError, match="not empty"):
        registry.fetch(version.id, dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert registry.fetch(version.short_id, empty) == empty
    assert files_below(empty) == files_below(dest)


def test_fetch_refuses_a_changed_byte_naming_the_stored_file(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    stored = tmp_path / REG / "customers" / "versions" / version.hex / "model" / "churn" / "model.ubj"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    dest = tmp_path / "fetched"
    with pytest.raises(ArtifactError) as caught:
        registry.fetch(version.id, dest)
    assert str(caught.value).startswith(f"file://{stored}: SHA-256 mismatch")
    assert version.id in str(caught.value)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetched")] == []


def test_fetch_refuses_a_rewritten_manifest(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    version = registry.publish(bundles[0])
    manifest = tmp_path / REG / "customers" / "versions" / version.hex / "model" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text(encoding="utf-8"))), encoding="utf-8")

    with pytest.raises(
        ArtifactError, match=r"model/manifest\.json: SHA-256 mismatch .*changed after publishing"
    ):
        registry.fetch(version.id, tmp_path / "fetched")


def test_corrupt_records_are_artifact_errors_naming_the_file(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    registry.promote(version.id, reason="first")
    marker = tmp_path / REG / "customers" / "versions" / version.hex / "version.json"
    marker.write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"version\.json: corrupt: not a version record"):
        registry.versions()
    marker.unlink()
    with pytest.raises(
        ArtifactError, match=r"production\.json: alias 'production' names sha256:.* does not hold"
    ):
        registry.get("production")


# ---- signatures ------------------------------------------------------------------------------------


def _stored(tmp_path: Path, version: ModelVersion, name: str = "signature.json") -> Path:
    return tmp_path / REG / "customers" / "versions" / version.hex / "model" / name


def _keys(root: Path, *names: str) -> dict[str, SigningSettings]:
    """Key pairs under ``root``; each name's settings: its private key, required (no development key)."""
    from engage.signing import generate_keypair

    found = {}
    for name in names:
        private, _ = generate_keypair(root, name=name)
        found[name] = SigningSettings(key_file=private, required=True)
    return found


def test_every_version_is_signed_before_its_commit_marker(
    registry: Registry, bundles: list[Path], tmp_path: Path, monkeypatch: Any
) -> None:
    order: list[str] = []
    real_write = Store.write

    def spy(self: Store, path: str, data: bytes) -> None:
        order.append(path.rsplit("/", 1)[-1])
        real_write(self, path, data)

    monkeypatch.setattr(Store, "write", spy)
    version = registry.publish(bundles[0])
    assert order.index("signature.json") < order.index("version.json")
    checked, signature = registry.verify(version.short_id)
    assert checked == version
    assert (signature.payload.model, signature.payload.version) == ("customers", version.id)
    assert signature == read_signature(_stored(tmp_path, version))


def test_fetch_refuses_an_unsigned_version_naming_the_stored_file(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    _stored(tmp_path, version).unlink()
    dest = tmp_path / "fetched"
    with pytest.raises(SignatureError) as caught:
        registry.fetch("sha256:" + version.hex, dest)
    assert str(caught.value) == (
        f"file://{_stored(tmp_path, version)}: missing: version {version.id} refused: unsigned "
        f"(engage registry sign {version.short_id} signs it with the configured key)"
    )
    assert not dest.exists()


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (lambda s: s.replace('"signature": "', '"signature": "AAAA', 1), "signature does not match"),
        (lambda s: s.replace('"model": "customers"', '"model": "telco"'), "it signs model 'telco', not 'customers'"),
        (lambda s: s[: len(s) // 2], "malformed signature file"),
    ],
)  # fmt: skip
def test_fetch_refuses_a_tampered_signature_naming_the_stored_file(
    registry: Registry, bundles: list[Path], tmp_path: Path, tamper: Any, says: str
) -> None:
    version = registry.publish(bundles[0])
    stored = _stored(tmp_path, version)
    stored.write_text(tamper(stored.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(SignatureError) as caught:
        registry.fetch(version.id, tmp_path / "fetched")
    message = str(caught.value)
    assert message.startswith(f"file://{stored}: version {version.id} refused: ")
    assert says in message
    assert "\n" not in message
    with pytest.raises(SignatureError):
        registry.verify(version.id)


def test_a_signature_copied_from_another_version_is_refused(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    a, b = registry.publish(bundles[0]), registry.publish(bundles[1])
    _stored(tmp_path, b).write_bytes(_stored(tmp_path, a).read_bytes())
    with pytest.raises(SignatureError, match=f"it signs version {a.id}"):
        registry.fetch(b.id, tmp_path / "fetched")


def test_rotation_sign_again_then_retire_the_old_key(bundles: list[Path], tmp_path: Path) -> None:
    """Publish with the old key; trust both; re-sign with the new key (audited); retire the old key."""
    keys = _keys(tmp_path / "keys", "old", "new")
    public = {n: (tmp_path / "keys" / f"{n}.pub.pem").read_text(encoding="utf-8") for n in keys}
    uri = str(tmp_path / REG)
    version = Registry(uri, signing=keys["old"]).publish(bundles[0])

    new_only = SigningSettings(public_keys=public["new"], required=True)
    with pytest.raises(SignatureError, match="signed by unknown key"):
        Registry(uri, signing=new_only).fetch(version.id, tmp_path / "a")
    both = SigningSettings(key_file=keys["new"].key_file, public_keys=public["old"], required=True)
    Registry(uri, signing=both).fetch(version.id, tmp_path / "b")  # during the rotation: either key

    _, signature = Registry(uri, signing=keys["new"]).sign(version.short_id, actor="ops")
    Registry(uri, signing=new_only).fetch(version.id, tmp_path / "c")  # the old key can go
    assert signature.key_id == read_signature(_stored(tmp_path, version)).key_id
    signed = [r for r in Registry(uri).audit() if r["event"] == "signed"]
    assert [(r["version"], r["key_id"], r["actor"]) for r in signed] == [
        (version.id, signature.key_id, "ops")
    ]


def test_sign_checks_the_files_first(registry: Registry, bundles: list[Path], tmp_path: Path) -> None:
    version = registry.publish(bundles[0])
    _stored(tmp_path, version).unlink()
    changed = _stored(tmp_path, version, "features.json")
    changed.write_text(changed.read_text(encoding="utf-8") + " ", encoding="utf-8")
    with pytest.raises(ArtifactError, match=r"features\.json: size mismatch"):
        registry.sign(version.id)
    assert not _stored(tmp_path, version).exists()
    assert [r["event"] for r in registry.audit()] == ["publish"]


def test_publishing_again_signs_an_unsigned_version_on_the_record(
    registry: Registry, bundles: list[Path], tmp_path: Path
) -> None:
    version = registry.publish(bundles[0])
    before = _stored(tmp_path, version).read_bytes()
    assert registry.publish(bundles[0]) == version
    assert _stored(tmp_path, version).read_bytes() == before  # a valid signature: nothing written
    _stored(tmp_path, version).unlink()  # a version from before signing
    registry.publish(bundles[0])
    registry.fetch(version.id, tmp_path / "fetched")
    assert [r["event"] for r in registry.audit()] == ["publish", "signed"]
    assert registry.audit()[-1]["reason"] == "published again"


def test_publishing_without_a_key_when_required_writes_nothing(bundles: list[Path], tmp_path: Path) -> None:
    from engage.errors import ConfigError

    registry = Registry(str(tmp_path / REG), signing=SigningSettings(required=True, dev_dir=tmp_path / "dev"))
    with pytest.raises(ConfigError, match="no signing key"):
        registry.publish(bundles[0])
    assert registry.versions() == []
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "dev").exists()


# ---- settings and CLI ------------------------------------------------------------------------------


def test_settings_read_the_environment(monkeypatch: Any) -> None:
    monkeypatch.delenv("ENGAGE_REGISTRY_URI", raising=False)
    monkeypatch.delenv("ENGAGE_REGISTRY_MODEL", raising=False)
    assert RegistrySettings() == RegistrySettings(uri="artifacts/registry", model="customers")
    monkeypatch.setenv("ENGAGE_REGISTRY_URI", "s3://models/engage")
    monkeypatch.setenv("ENGAGE_REGISTRY_MODEL", "telco")
    assert (RegistrySettings().uri, RegistrySettings().model) == ("s3://models/engage", "telco")


def test_cli_lists_shows_and_audits(registry: Registry, bundles: list[Path], monkeypatch: Any) -> None:
    from engage.cli._registry import app

    a = registry.publish(bundles[0], metadata=METADATA)
    b = registry.publish(bundles[1])
    registry.promote(a.id, reason="first")
    registry.promote(b.id, reason="second")
    runner = CliRunner()

    listed = runner.invoke(app, ["list", "--registry", registry.uri])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert "2 version(s)" in lines[0]
    row_a = next(line for line in lines if a.short_id in line)
    assert "previous" in row_a
    assert "pass" in row_a
    assert "churn.auc_roc=0.8312" in row_a
    assert lines.index(next(line for line in lines if b.short_id in line)) < lines.index(row_a)

    monkeypatch.setenv("ENGAGE_REGISTRY_URI", registry.uri)  # the default comes from the environment
    shown = runner.invoke(app, ["show", a.short_id])
    assert shown.exit_code == 0, shown.output
    assert ModelVersion.model_validate_json(shown.output) == registry.get(a.id)

    audited = runner.invoke(app, ["audit", "--json"])
    assert audited.exit_code == 0, audited.output
    events = [json.loads(line) for line in audited.output.splitlines()]
    assert [e["event"] for e in events] == ["publish", "publish", "alias", "alias", "alias"]
    table = runner.invoke(app, ["audit"])
    assert table.exit_code == 0, table.output
    assert "second" in table.output
    assert "5 record(s)" in table.output

    unknown = runner.invoke(app, ["show", "nope"])
    assert isinstance(unknown.exception, RegistryError)


@pytest.mark.parametrize(
    ("metadata", "shown"),
    [
        ({"policy_verdict": "pass"}, "pass"),
        ({"policy": {"verdict": "fail"}}, "fail"),
        ({"policy": {"rules": [{"passed": True}, {"passed": True}]}}, "pass"),
        ({"policy": {"rules": [{"passed": True}, {"passed": False}]}}, "fail"),
        ({}, ""),
    ],
)
def test_cli_shows_the_recorded_policy_verdict(metadata: dict[str, Any], shown: str) -> None:
    from engage.cli._registry import _verdict

    assert _verdict(metadata) == shown


def test_cli_verify_and_sign(
    registry: Registry, bundles: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_signing import run_cli

    a, b = registry.publish(bundles[0]), registry.publish(bundles[1])
    registry.promote(a.id, reason="first")
    where = ["--registry", registry.uri]

    code, out, err = run_cli(["registry", "verify", "production", b.short_id, *where], capsys)
    assert (code, err) == (0, "")
    assert [line.split()[:2] for line in out.splitlines()] == [
        [a.short_id, "verified:"],
        [b.short_id, "verified:"],
    ]

    _stored(tmp_path, b).unlink()
    code, out, err = run_cli(["registry", "verify", "production", b.short_id, *where], capsys)
    assert code == 1  # a verdict, as engage audit verify gives one
    assert out.startswith(f"{a.short_id} verified:")
    assert (
        err
        == f"{b.short_id} REFUSED: file://{_stored(tmp_path, b)}: missing: version {b.id} refused: "
        + (f"unsigned (engage registry sign {b.short_id} signs it with the configured key)\n")
    )

    code, out, err = run_cli(["registry", "sign", b.short_id, *where, "--actor", "ops"], capsys)
    assert code == 0, err
    assert out.startswith(f"{b.short_id} signed by key ")
    assert run_cli(["registry", "verify", b.id, *where], capsys)[0] == 0
    assert registry.audit()[-1]["actor"] == "ops"

    code, _, err = run_cli(["registry", "verify", "nope", *where], capsys)
    assert code == 2
    assert err.startswith("engage: error: no version or alias 'nope'")
