"""Signatures of model versions: Ed25519 over the version id (the SHA-256 of the bundle's manifest, which
lists the SHA-256 of every file) and the model name, kept in ``signature.json`` beside the manifest."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engage.artifacts import MANIFEST, SIGNATURE
from engage.errors import ArtifactError, ConfigError

from ._keys import (
    dev_private_key,
    dev_public_key,
    key_id,
    parse_private_key,
    parse_public_keys,
    read_key_file,
    read_public_keys,
)
from ._settings import SigningSettings, signing_settings

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "PAYLOAD_TYPE",
    "SIGNATURE_FILE",
    "Keyring",
    "Signature",
    "SignatureError",
    "SignedPayload",
    "Signer",
    "check_signature",
    "load_keyring",
    "load_signer",
    "parse_signature",
    "read_signature",
    "sign_bundle",
    "verify_bundle",
    "verify_model_dir",
]

log = logging.getLogger("engage.signing")

#: the signature's file name, at the top of a model bundle beside ``manifest.json`` (which cannot list it)
SIGNATURE_FILE = SIGNATURE
PAYLOAD_TYPE: Final = "engage.model-signature/1"
#: development key folders already announced by this process (one WARNING each, not one per call)
_warned: set[tuple[str, str]] = set()


class SignatureError(ArtifactError):
    """A model version is unsigned, signed by a key nobody trusts, or its signature does not match.

    The message is one line: the signature file, the version, and why it is refused.
    """


class SignedPayload(BaseModel):
    """What is signed: the canonical JSON of this object (sorted keys, no spaces)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["engage.model-signature/1"] = "engage.model-signature/1"
    model: str = Field(min_length=1, description="The registry's model name")
    version: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="SHA-256 of the bundle's manifest")

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()


class Signature(BaseModel):
    """The content of ``signature.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signature_format: Literal[1] = 1
    algorithm: Literal["ed25519"] = "ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the raw public key")
    payload: SignedPayload
    signature: str = Field(description="The Ed25519 signature of the canonical payload, base64")
    signed_at: datetime = Field(description="When it was signed (informational: not signed itself)")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


@dataclass(frozen=True)
class Signer:
    """A private key and where it came from (``development`` when it is the generated local key)."""

    key: Ed25519PrivateKey
    source: str
    development: bool = False

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def sign(self, *, model: str, version: str) -> Signature:
        payload = SignedPayload(model=model, version=version)
        raw = self.key.sign(payload.canonical())
        return Signature(
            key_id=self.key_id,
            payload=payload,
            signature=base64.b64encode(raw).decode(),
            signed_at=datetime.now(UTC),
        )


@dataclass(frozen=True)
class Keyring:
    """The public keys a verifier trusts, by key id, and where they came from (for error messages)."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    source: str = "no public keys configured"

    def check(self, signature: Signature, where: str) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is by a trusted key and matches its payload."""
        from cryptography.exceptions import InvalidSignature

        version = signature.payload.version
        public = self.keys.get(signature.key_id)
        if public is None:
            trusted = ", ".join(k[:16] for k in sorted(self.keys)) or "none"
            raise SignatureError(
                f"{where}: version {version} refused: signed by unknown key {signature.key_id[:16]} "
                f"(trusted: {trusted}; {self.source})"
            )
        try:
            raw = base64.b64decode(signature.signature, validate=True)
            public.verify(raw, signature.payload.canonical())
        except (InvalidSignature, binascii.Error, ValueError):
            raise SignatureError(
                f"{where}: version {version} refused: signature does not match (key "
                f"{signature.key_id[:16]}): the signature or what it names was changed after signing"
            ) from None


def load_signer(settings: SigningSettings | None = None) -> Signer:
    """The configured private key (``ENGAGE_SIGNING_KEY`` / ``_KEY_FILE``), else the development key
    (generated on first use; a WARNING says so), else — with ``required`` — :class:`ConfigError`."""
    settings = settings or signing_settings()
    configured = _configured_private(settings)
    if configured is not None:
        return configured
    if settings.required:
        raise ConfigError(
            "no signing key: set ENGAGE_SIGNING_KEY or ENGAGE_SIGNING_KEY_FILE (ENGAGE_SIGNING_REQUIRED=true "
            "never signs with the development key)"
        )
    signer = Signer(
        dev_private_key(settings.dev_dir), f"development key {settings.dev_dir}", development=True
    )
    _warn_once(
        "sign",
        settings.dev_dir,
        f"signing with the DEVELOPMENT key in {settings.dev_dir} (key id {signer.key_id[:16]}): not for "
        "production; set ENGAGE_SIGNING_KEY or ENGAGE_SIGNING_KEY_FILE",
    )
    return signer


def load_keyring(settings: SigningSettings | None = None) -> Keyring:
    """The trusted public keys: ``ENGAGE_SIGNING_PUBLIC_KEYS`` / ``_FILE`` and the public half of a
    configured private key; when none is configured (and not ``required``), the development public key."""
    settings = settings or signing_settings()
    keys: list[Ed25519PublicKey] = []
    sources: list[str] = []
    if settings.public_keys.strip():
        keys += parse_public_keys(settings.public_keys, "ENGAGE_SIGNING_PUBLIC_KEYS")
        sources.append("ENGAGE_SIGNING_PUBLIC_KEYS")
    if settings.public_keys_file is not None:
        keys += read_public_keys(settings.public_keys_file)
        sources.append(str(settings.public_keys_file))
    private = _configured_private(settings)
    if private is not None:
        keys.append(private.key.public_key())
        sources.append(private.source)
    if not keys and not settings.required:
        dev = dev_public_key(settings.dev_dir)
        if dev is not None:
            keys.append(dev)
            sources.append(f"development key {settings.dev_dir}")
            _warn_once(
                "verify",
                settings.dev_dir,
                f"verifying with the DEVELOPMENT key in {settings.dev_dir}: not for production; set "
                "ENGAGE_SIGNING_PUBLIC_KEYS or ENGAGE_SIGNING_PUBLIC_KEYS_FILE",
            )
    if sources:
        source = "keys from " + ", ".join(sources)
    elif settings.required:
        source = (
            "no public keys configured: set ENGAGE_SIGNING_PUBLIC_KEYS or ENGAGE_SIGNING_PUBLIC_KEYS_FILE"
        )
    else:
        source = f"no public keys configured and no development key in {settings.dev_dir}"
    return Keyring({key_id(k): k for k in keys}, source)


def read_signature(path: Path) -> Signature:
    """Parse a ``signature.json``; :class:`SignatureError` naming the file when it is malformed."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SignatureError(f"{path}: unreadable signature: {e.strerror or e}") from None
    return parse_signature(data, str(path))


def parse_signature(data: bytes, where: str) -> Signature:
    """Parse the bytes of a ``signature.json`` (``where`` names it); :class:`SignatureError` when malformed."""
    try:
        return Signature.model_validate_json(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise SignatureError(f"{where}: malformed signature file ({field}: {first['msg']})") from None


def sign_bundle(directory: Path, *, model: str, signer: Signer | None = None) -> Signature:
    """Sign the bundle in ``directory`` (its manifest names every file) and write its ``signature.json``.

    For bundles that are no registry version (a test's, a benchmark's): the registry signs what it
    publishes itself.
    """
    from engage._io import write_text_atomic

    signature = (signer or load_signer()).sign(model=model, version=bundle_id(Path(directory)))
    write_text_atomic(Path(directory) / SIGNATURE_FILE, signature.to_json())
    return signature


def verify_bundle(
    directory: Path,
    *,
    model: str | None = None,
    keyring: Keyring | None = None,
    version: str | None = None,
) -> Signature:
    """Check the bundle's ``signature.json`` against its manifest and the trusted keys.

    ``version``: the id the bundle must have (the registry's); by default the SHA-256 of its manifest.
    ``model``: the model name the signature must name (None: any). An unsigned bundle, a signature of
    another version or model, by an unknown key, or that does not match is a :class:`SignatureError`.
    The signature vouches for the manifest only: check the files against it too
    (:func:`engage.artifacts.verify_manifest`, which :func:`engage.model.load_bundle` runs).
    """
    directory = Path(directory)
    actual = version or bundle_id(directory)
    path = directory / SIGNATURE_FILE
    if not path.is_file():
        raise SignatureError(f"{path}: missing: version {actual} refused: unsigned")
    try:
        signature = read_signature(path)
    except SignatureError as e:
        raise SignatureError(
            f"{path}: version {actual} refused: {e.message.removeprefix(f'{path}: ')}"
        ) from None
    check_signature(signature, version=actual, model=model, keyring=keyring, where=str(path))
    return signature


def check_signature(
    signature: Signature, *, version: str, model: str | None, keyring: Keyring | None, where: str
) -> None:
    """:class:`SignatureError` unless ``signature`` signs ``version`` (and ``model``, unless None) with a
    trusted key and matches; ``where`` names the signature in the message."""
    signed = signature.payload
    if signed.version != version:
        raise SignatureError(
            f"{where}: version {version} refused: signature does not match: it signs version {signed.version}"
        )
    if model is not None and signed.model != model:
        raise SignatureError(
            f"{where}: version {version} refused: signature does not match: it signs model {signed.model!r}, "
            f"not {model!r}"
        )
    (keyring or load_keyring()).check(signature, where)


def verify_model_dir(directory: Path, settings: SigningSettings | None = None) -> Signature | None:
    """What a server checks before it loads the bundle in ``directory`` (``--model_dir``, or a registry
    version fetched there): its signature, by a trusted key (:func:`verify_bundle`).

    An unsigned folder is refused too, unless ``allow_unsigned`` (development: a raw training output)
    and not ``required``: then a WARNING, and None. A signed folder is always verified.
    """
    settings = settings or signing_settings()
    directory = Path(directory)
    if not (directory / SIGNATURE_FILE).is_file() and (directory / MANIFEST).is_file():
        version = bundle_id(directory)
        if settings.allow_unsigned and not settings.required:
            log.warning(
                "%s: loading UNSIGNED version %s (ENGAGE_SIGNING_ALLOW_UNSIGNED=true: development only)",
                directory,
                version,
            )
            return None
        escape = (
            ""
            if settings.required
            else "; ENGAGE_SIGNING_ALLOW_UNSIGNED=true loads a raw training output, for development only"
        )
        raise SignatureError(
            f"{directory / SIGNATURE_FILE}: missing: version {version} refused: unsigned (a server loads "
            f"only signed versions: publish it to the registry, which signs it{escape})"
        )
    return verify_bundle(directory, keyring=load_keyring(settings))


def bundle_id(directory: Path) -> str:
    """The bundle's version: the SHA-256 of its manifest (as :func:`engage.model.bundle_version`)."""
    from engage._io import sha256_file

    manifest = Path(directory) / MANIFEST
    if not manifest.is_file():
        raise ArtifactError(f"{manifest}: missing: not an Engage model directory")
    return f"sha256:{sha256_file(manifest)}"


def _configured_private(settings: SigningSettings) -> Signer | None:
    if settings.key is not None and settings.key_file is not None:
        raise ConfigError("give ENGAGE_SIGNING_KEY or ENGAGE_SIGNING_KEY_FILE, not both")
    if settings.key is not None:
        key = parse_private_key(settings.key.get_secret_value(), "ENGAGE_SIGNING_KEY")
        return Signer(key, "ENGAGE_SIGNING_KEY")
    if settings.key_file is not None:
        path = settings.key_file
        return Signer(parse_private_key(read_key_file(path), str(path)), str(path))
    return None


def _warn_once(kind: str, dev_dir: Path, message: str) -> None:
    if (kind, str(dev_dir)) not in _warned:
        _warned.add((kind, str(dev_dir)))
        log.warning("%s", message)
