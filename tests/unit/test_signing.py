"""Signed model bundles (engage.signing): sign and verify, key rotation, every way a signature is refused,
the servers' policy for a model folder, key files and settings, the development key, ``engage keys``.

The bundles are tiny: a folder with two small files and its manifest (what is signed is the manifest's
SHA-256, whatever the files hold).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from engage.artifacts import write_manifest
from engage.errors import ArtifactError, ConfigError
from engage.signing import (
    SIGNATURE_FILE,
    Keyring,
    SignatureError,
    Signer,
    SigningSettings,
    generate_keypair,
    key_id,
    load_keyring,
    load_signer,
    read_public_keys,
    sign_bundle,
    signing_settings,
    verify_bundle,
    verify_model_dir,
)
from engage.signing._keys import DEV_PRIVATE, DEV_PUBLIC, dev_private_key

MODEL = "customers"


def make_bundle(folder: Path, content: str = "trees") -> Path:
    """A model folder with a manifest: what a signature vouches for."""
    (folder / "churn").mkdir(parents=True)
    (folder / "churn" / "model.json").write_text(json.dumps({"trees": content}), encoding="utf-8")
    (folder / "features.json").write_text('{"columns": ["tenure"]}', encoding="utf-8")
    write_manifest(folder, metadata={"format": "test"})
    return folder


def version_of(folder: Path) -> str:
    from engage.model import bundle_version

    return bundle_version(folder)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, SigningSettings]:
    """Two key pairs, ``old`` and ``new``, each as the settings of a publisher holding it."""
    found = {}
    for name in ("old", "new"):
        private, _ = generate_keypair(tmp_path / "keys", name=name)
        found[name] = SigningSettings(key_file=private, required=True)
    return found


def public(tmp_path: Path, *names: str) -> str:
    return "".join((tmp_path / "keys" / f"{n}.pub.pem").read_text(encoding="utf-8") for n in names)


def verifier(tmp_path: Path, *names: str) -> Keyring:
    return load_keyring(SigningSettings(public_keys=public(tmp_path, *names), required=True))


# --- sign and verify -------------------------------------------------------------------------------------


def test_a_signed_bundle_verifies_and_names_its_version(tmp_path: Path, keys: dict[str, Any]) -> None:
    bundle = make_bundle(tmp_path / "model")
    signer = load_signer(keys["old"])
    signature = sign_bundle(bundle, model=MODEL, signer=signer)

    assert signature.payload.version == version_of(bundle)
    assert signature.payload.model == MODEL
    assert signature.key_id == signer.key_id == key_id(signer.key.public_key())
    stored = json.loads((bundle / SIGNATURE_FILE).read_text(encoding="utf-8"))
    assert stored["algorithm"] == "ed25519"
    assert stored["payload"] == {
        "type": "engage.model-signature/1",
        "model": MODEL,
        "version": version_of(bundle),
    }
    assert verify_bundle(bundle, model=MODEL, keyring=verifier(tmp_path, "old")) == signature
    # the signature sits beside the manifest, unlisted: the bundle still verifies file by file
    from engage.artifacts import verify_manifest

    verify_manifest(bundle)


def test_rotation_old_and_new_keys_both_verify_while_both_are_trusted(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    before = make_bundle(tmp_path / "before", "v1")
    after = make_bundle(tmp_path / "after", "v2")
    sign_bundle(before, model=MODEL, signer=load_signer(keys["old"]))
    sign_bundle(after, model=MODEL, signer=load_signer(keys["new"]))

    both = verifier(tmp_path, "new", "old")
    assert len(both.keys) == 2
    verify_bundle(before, keyring=both)
    verify_bundle(after, keyring=both)
    # the old key retired: what it signed is refused until signed again
    only_new = verifier(tmp_path, "new")
    verify_bundle(after, keyring=only_new)
    with pytest.raises(SignatureError, match="signed by unknown key"):
        verify_bundle(before, keyring=only_new)


def test_an_unknown_key_is_refused_naming_the_file_the_version_and_the_trusted_keys(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    bundle = make_bundle(tmp_path / "model")
    signature = sign_bundle(bundle, model=MODEL, signer=load_signer(keys["old"]))
    trusted = verifier(tmp_path, "new")

    with pytest.raises(SignatureError) as caught:
        verify_bundle(bundle, keyring=trusted)
    message = str(caught.value)
    assert message.startswith(f"{bundle / SIGNATURE_FILE}: version {version_of(bundle)} refused: ")
    assert f"signed by unknown key {signature.key_id[:16]}" in message
    assert next(iter(trusted.keys))[:16] in message
    assert "\n" not in message
    assert isinstance(caught.value, ArtifactError)  # a server reports it as it reports a corrupt model


def test_a_changed_manifest_is_refused(tmp_path: Path, keys: dict[str, Any]) -> None:
    bundle = make_bundle(tmp_path / "model")
    signed = sign_bundle(bundle, model=MODEL, signer=load_signer(keys["old"])).payload.version
    manifest = bundle / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text(encoding="utf-8"))), encoding="utf-8")

    with pytest.raises(SignatureError) as caught:
        verify_bundle(bundle, keyring=verifier(tmp_path, "old"))
    assert str(caught.value) == (
        f"{bundle / SIGNATURE_FILE}: version {version_of(bundle)} refused: signature does not match: "
        f"it signs version {signed}"
    )


def test_a_signature_moved_to_another_bundle_is_refused(tmp_path: Path, keys: dict[str, Any]) -> None:
    signed = make_bundle(tmp_path / "signed", "good")
    other = make_bundle(tmp_path / "other", "swapped trees")
    sign_bundle(signed, model=MODEL, signer=load_signer(keys["old"]))
    (other / SIGNATURE_FILE).write_bytes((signed / SIGNATURE_FILE).read_bytes())

    with pytest.raises(SignatureError, match="signature does not match: it signs version"):
        verify_bundle(other, keyring=verifier(tmp_path, "old"))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: {**s, "signature": s["signature"][:10] + ("A" if s["signature"][10] != "A" else "B") + s["signature"][11:]}, id="signature-bytes"),
        pytest.param(lambda s: {**s, "payload": {**s["payload"], "model": "telco"}}, id="payload-model"),
        pytest.param(lambda s: {**s, "signature": "bm90IGEgc2lnbmF0dXJl"}, id="short-signature"),
        pytest.param(lambda s: {**s, "signature": "***"}, id="not-base64"),
    ],
)  # fmt: skip
def test_a_changed_signature_is_refused(tmp_path: Path, keys: dict[str, Any], tamper: Any) -> None:
    bundle = make_bundle(tmp_path / "model")
    sign_bundle(bundle, model=MODEL, signer=load_signer(keys["old"]))
    path = bundle / SIGNATURE_FILE
    path.write_text(json.dumps(tamper(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")

    with pytest.raises(SignatureError) as caught:
        verify_bundle(bundle, keyring=verifier(tmp_path, "old"))
    assert str(caught.value).startswith(
        f"{path}: version {version_of(bundle)} refused: signature does not match"
    )


def test_a_signature_of_another_model_is_refused(tmp_path: Path, keys: dict[str, Any]) -> None:
    bundle = make_bundle(tmp_path / "model")
    sign_bundle(bundle, model="telco", signer=load_signer(keys["old"]))
    keyring = verifier(tmp_path, "old")
    verify_bundle(bundle, keyring=keyring)  # no model asked: a server loading a folder
    with pytest.raises(SignatureError, match="it signs model 'telco', not 'customers'"):
        verify_bundle(bundle, model=MODEL, keyring=keyring)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "malformed signature file ((top): Invalid JSON"),
        ('{"signature_format": 1}', "malformed signature file (key_id: Field required)"),
        ('{"signature_format": 2}', "malformed signature file (signature_format: Input should be 1)"),
        ("[]", "malformed signature file ((top): Input should be an object"),
    ],
)
def test_a_malformed_signature_file_is_one_line_naming_file_and_version(
    tmp_path: Path, content: str, says: str
) -> None:
    bundle = make_bundle(tmp_path / "model")
    (bundle / SIGNATURE_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(SignatureError) as caught:
        verify_bundle(bundle, keyring=Keyring())
    message = str(caught.value)
    assert message.startswith(f"{bundle / SIGNATURE_FILE}: version {version_of(bundle)} refused: {says}")
    assert "\n" not in message


def test_an_unsigned_bundle_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "model")
    with pytest.raises(SignatureError) as caught:
        verify_bundle(bundle, keyring=Keyring())
    assert (
        str(caught.value)
        == f"{bundle / SIGNATURE_FILE}: missing: version {version_of(bundle)} refused: unsigned"
    )


# --- the servers' policy for a model folder -------------------------------------------------------------


def test_a_server_refuses_an_unsigned_folder_unless_development_allows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = make_bundle(tmp_path / "model")
    dev = tmp_path / "dev"
    with pytest.raises(SignatureError) as caught:
        verify_model_dir(bundle, SigningSettings(dev_dir=dev))
    assert str(caught.value).startswith(
        f"{bundle / SIGNATURE_FILE}: missing: version {version_of(bundle)} refused: unsigned"
    )
    assert "ENGAGE_SIGNING_ALLOW_UNSIGNED=true" in str(caught.value)

    with caplog.at_level(logging.WARNING, logger="engage.signing"):
        assert verify_model_dir(bundle, SigningSettings(dev_dir=dev, allow_unsigned=True)) is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"loading UNSIGNED version {version_of(bundle)}" in caplog.records[0].getMessage()

    # required wins: a cluster never loads an unsigned folder, whatever else is set
    with pytest.raises(
        SignatureError,
        match=r"refused: unsigned \(a server loads only signed versions: publish it to the registry, which signs it\)$",
    ):
        verify_model_dir(bundle, SigningSettings(dev_dir=dev, allow_unsigned=True, required=True))
    assert not dev.exists()  # verifying never generates a key


def test_allowing_unsigned_never_lets_a_bad_signature_through(tmp_path: Path, keys: dict[str, Any]) -> None:
    bundle = make_bundle(tmp_path / "model")
    sign_bundle(bundle, model=MODEL, signer=load_signer(keys["old"]))
    settings = SigningSettings(public_keys=public(tmp_path, "new"), allow_unsigned=True)
    with pytest.raises(SignatureError, match="signed by unknown key"):
        verify_model_dir(bundle, settings)
    trusted = SigningSettings(public_keys=public(tmp_path, "old"), allow_unsigned=True)
    assert verify_model_dir(bundle, trusted) is not None


def test_a_folder_without_a_manifest_says_so(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"manifest\.json: missing: not an Engage model directory"):
        verify_model_dir(tmp_path / "nothing", SigningSettings(dev_dir=tmp_path / "dev"))


# --- keys and settings -----------------------------------------------------------------------------------


def test_generated_keys_are_private_0600_and_never_overwritten(tmp_path: Path) -> None:
    private, public_path = generate_keypair(tmp_path, name="k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in private.read_text(encoding="utf-8")
    assert "PUBLIC KEY" in public_path.read_text(encoding="utf-8")
    before = private.read_bytes()
    with pytest.raises(ConfigError, match=r"k\.pem: exists already: a signing key is never overwritten"):
        generate_keypair(tmp_path, name="k")
    assert private.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem", "k.pub.pem"]  # no temporary file left


def test_a_private_key_among_the_public_keys_is_refused(tmp_path: Path, keys: dict[str, Any]) -> None:
    private = (tmp_path / "keys" / "old.pem").read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="ENGAGE_SIGNING_PUBLIC_KEYS: holds a private key"):
        load_keyring(SigningSettings(public_keys=public(tmp_path, "new") + private))
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "new.pem").write_text(public(tmp_path, "new"), encoding="utf-8")
    (folder / "oops.pem").write_text(private, encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"oops\.pem: holds a private key: give the servers public keys only"
    ):
        load_keyring(SigningSettings(public_keys_file=folder))


def test_public_keys_from_a_mounted_secret_folder_raw_base64_and_mixed(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    folder = tmp_path / "secret"
    data = folder / "..2026_01_01"  # how the kubelet mounts a Secret: a hidden data folder and links
    data.mkdir(parents=True)
    (data / "old.pem").write_text(public(tmp_path, "old"), encoding="utf-8")
    (folder / "old.pem").symlink_to(data / "old.pem")
    new_key = load_signer(keys["new"]).key.public_key()
    raw = base64.b64encode(new_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    (folder / "new.b64").write_text(raw + "\n", encoding="utf-8")

    ring = load_keyring(SigningSettings(public_keys_file=folder, required=True))
    assert set(ring.keys) == {load_signer(keys["old"]).key_id, key_id(new_key)}
    assert str(folder) in ring.source


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "holds no Ed25519 public key"),
        ("c2hvcnQ=", "a raw Ed25519 public key is 32 bytes, this is 5"),
        ("not base64 at all!", "not a PEM public key nor base64 of one"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a readable PEM public key"),
    ],
)
def test_bad_public_key_files_are_config_errors_naming_the_file(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "keys.pem"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_public_keys(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert says in str(caught.value)


def test_required_needs_configured_keys(tmp_path: Path) -> None:
    settings = SigningSettings(dev_dir=tmp_path / "dev", required=True)
    with pytest.raises(
        ConfigError, match="no signing key: set ENGAGE_SIGNING_KEY or ENGAGE_SIGNING_KEY_FILE"
    ):
        load_signer(settings)
    ring = load_keyring(settings)
    assert ring.keys == {}
    assert "set ENGAGE_SIGNING_PUBLIC_KEYS or ENGAGE_SIGNING_PUBLIC_KEYS_FILE" in ring.source
    assert not (tmp_path / "dev").exists()


def test_a_configured_private_key_signs_and_its_public_half_is_trusted(
    tmp_path: Path, keys: dict[str, Any]
) -> None:
    text = (tmp_path / "keys" / "old.pem").read_text(encoding="utf-8")
    settings = SigningSettings(key=text, dev_dir=tmp_path / "dev")
    signer = load_signer(settings)
    assert not signer.development
    assert signer.key_id == load_signer(keys["old"]).key_id
    assert set(load_keyring(settings).keys) == {signer.key_id}
    with pytest.raises(ConfigError, match="not both"):
        load_signer(SigningSettings(key=text, key_file=tmp_path / "keys" / "old.pem"))
    assert not (tmp_path / "dev").exists()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_SIGNING_PUBLIC_KEYS_FILE", str(tmp_path / "k"))
    monkeypatch.setenv("ENGAGE_SIGNING_REQUIRED", "true")
    settings = signing_settings()
    assert (settings.public_keys_file, settings.required, settings.allow_unsigned) == (
        tmp_path / "k",
        True,
        False,
    )
    monkeypatch.setenv("ENGAGE_SIGNING_REQUIRED", "maybe")
    with pytest.raises(ConfigError, match="ENGAGE_SIGNING_REQUIRED: Input should be a valid boolean"):
        signing_settings()


# --- the development key ---------------------------------------------------------------------------------


def test_the_development_key_is_made_once_under_dev_dir_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev = tmp_path / "signing"
    settings = SigningSettings(dev_dir=dev)
    assert load_keyring(settings).keys == {}  # nothing configured and no key yet: nothing trusted
    with caplog.at_level(logging.WARNING, logger="engage.signing"):
        signer = load_signer(settings)
        again = load_signer(settings)
    assert signer.development
    assert again.key_id == signer.key_id
    assert sorted(p.name for p in dev.iterdir()) == [DEV_PRIVATE, DEV_PUBLIC]
    assert stat.S_IMODE((dev / DEV_PRIVATE).stat().st_mode) == 0o600
    messages = [r.getMessage() for r in caplog.records]
    assert any("generated a development signing key" in m for m in messages)
    assert sum("signing with the DEVELOPMENT key" in m for m in messages) == 1  # once per process
    assert set(load_keyring(settings).keys) == {signer.key_id}


def test_racing_to_make_the_development_key_every_racer_gets_the_same(tmp_path: Path) -> None:
    """Eight threads create the key at once (as pipeline steps and servers starting together would): the
    first link wins, every one uses its key, no temporary file is left."""
    dev = tmp_path / "signing"
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def make() -> None:
        barrier.wait()
        ids.append(key_id(dev_private_key(dev).public_key()))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert sorted(os.listdir(dev)) == [DEV_PRIVATE, DEV_PUBLIC]
    assert key_id(read_public_keys(dev / DEV_PUBLIC)[0]) == ids[0]


def test_an_unwritable_dev_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot create the development signing key"):
        load_signer(SigningSettings(dev_dir=blocker / "signing"))


def test_signer_is_what_sign_bundle_uses_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGAGE_SIGNING_DEV_DIR", str(tmp_path / "dev"))
    bundle = make_bundle(tmp_path / "model")
    signature = sign_bundle(bundle, model=MODEL)
    assert isinstance(load_signer(), Signer)
    assert signature.key_id == load_signer().key_id
    assert verify_model_dir(bundle) == signature


# --- engage keys generate -------------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from engage.cli._main import main

    with pytest.raises(SystemExit) as done:
        main(args)
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out, captured.err


def test_cli_keys_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["keys", "generate", "--out", str(tmp_path / "k")], capsys)
    assert code == 0
    private = tmp_path / "k" / "engage-signing.pem"
    assert out.splitlines()[0] == f"key id {load_signer(SigningSettings(key_file=private)).key_id}"
    code, _, err = run_cli(["keys", "generate", "--out", str(tmp_path / "k")], capsys)
    assert code == 2
    assert err == f"engage: error: {private}: exists already: a signing key is never overwritten\n"
