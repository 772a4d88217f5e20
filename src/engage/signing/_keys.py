"""Ed25519 keys: parsing (PEM or raw base64), fingerprints, generation, the development key pair."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from engage.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "DEV_PRIVATE",
    "DEV_PUBLIC",
    "dev_private_key",
    "dev_public_key",
    "generate_keypair",
    "key_id",
    "parse_private_key",
    "parse_public_keys",
    "read_key_file",
    "read_public_keys",
]

log = logging.getLogger("engage.signing")

DEV_PRIVATE = "dev-signing-key.pem"
DEV_PUBLIC = "dev-signing-key.pub.pem"
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)


def key_id(public: Ed25519PublicKey) -> str:
    """The fingerprint of a public key: the SHA-256 of its 32 raw bytes, hex."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def parse_private_key(text: str, where: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, unencrypted) or the raw 32-byte seed in base64."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    text = text.strip()
    if "-----BEGIN" in text:
        try:
            key = load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: not a readable unencrypted PEM private key ({_first(e)})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{where}: a {type(key).__name__.lstrip('_')}, not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw32(text, where, "private"))


def parse_public_keys(text: str, where: str) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key in ``text``: PEM blocks (SubjectPublicKeyInfo), or raw 32-byte keys in
    base64 separated by commas or white space."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: list[Ed25519PublicKey] = []
    for block in _PEM.finditer(text):
        if "PRIVATE" in block.group(1):
            raise ConfigError(f"{where}: holds a private key: give the servers public keys only")
        try:
            key = load_pem_public_key(block.group(0).encode())
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{where}: not a readable PEM public key ({_first(e)})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{where}: a {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
        keys.append(key)
    rest = _PEM.sub(" ", text)
    for token in re.split(r"[\s,]+", rest.strip()):
        if token:
            keys.append(Ed25519PublicKey.from_public_bytes(_raw32(token, where, "public")))
    return keys


def generate_keypair(out_dir: Path, *, name: str = "engage-signing") -> tuple[Path, Path]:
    """Write a new key pair: ``<name>.pem`` (PKCS#8 private key, mode 0600) and ``<name>.pub.pem``.

    Refuses to overwrite an existing private key (:class:`ConfigError`).
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir = Path(out_dir)
    private_path, public_path = out_dir / f"{name}.pem", out_dir / f"{name}.pub.pem"
    key = Ed25519PrivateKey.generate()
    if not _create_private(private_path, key):
        raise ConfigError(f"{private_path}: exists already: a signing key is never overwritten")
    _write_public(public_path, key.public_key())
    return private_path, public_path


def dev_private_key(dev_dir: Path) -> Ed25519PrivateKey:
    """The development signing key under ``dev_dir``, generated on first use (0600; several processes may
    race to create it: the first one wins and every one uses its key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(dev_dir) / DEV_PRIVATE
    public = Path(dev_dir) / DEV_PUBLIC
    try:
        if not path.is_file() and _create_private(path, Ed25519PrivateKey.generate()):
            log.warning("generated a development signing key: %s (not for production)", path)
        key = parse_private_key(read_key_file(path), str(path))
        if not public.is_file():
            _write_public(public, key.public_key())
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot create the development signing key ({e.strerror or e}): set ENGAGE_SIGNING_KEY "
            "or ENGAGE_SIGNING_KEY_FILE, or ENGAGE_SIGNING_DEV_DIR to a writable folder"
        ) from None
    return key


def dev_public_key(dev_dir: Path) -> Ed25519PublicKey | None:
    """The public half of the development key under ``dev_dir``, or None when there is none yet."""
    public, private = Path(dev_dir) / DEV_PUBLIC, Path(dev_dir) / DEV_PRIVATE
    if public.is_file():
        keys = parse_public_keys(read_key_file(public), str(public))
        return keys[0] if keys else None
    if private.is_file():
        return parse_private_key(read_key_file(private), str(private)).public_key()
    return None


def read_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """The public keys in a file, or in every plain file of a folder (a mounted Secret: its ``..data``
    links and hidden entries skipped); :class:`ConfigError` when there is none (a verifier with no key
    would refuse every version, for a reason far from its cause)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
        keys = [k for f in files for k in parse_public_keys(read_key_file(f), str(f))]
    else:
        keys = parse_public_keys(read_key_file(path), str(path))
    if not keys:
        raise ConfigError(f"{path}: holds no Ed25519 public key (PEM, or 32 bytes in base64)")
    return keys


def read_key_file(path: Path) -> str:
    """A key file's text; :class:`ConfigError` naming it when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the key: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a key file (not text)") from None


# --- helpers -------------------------------------------------------------------------------------------


def _create_private(path: Path, key: Ed25519PrivateKey) -> bool:
    """Write ``key`` to ``path`` (0600) unless a file is there; atomic: a hard link refuses to replace."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmp, 0o600)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def _write_public(path: Path, key: Ed25519PublicKey) -> None:
    """Write ``key`` to ``path`` atomically (a unique temporary file, then a rename: racers may each
    write it; they write the same key)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _raw32(text: str, where: str, kind: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: not a PEM {kind} key nor base64 of one") from None
    if len(raw) != 32:
        raise ConfigError(f"{where}: a raw Ed25519 {kind} key is 32 bytes, this is {len(raw)}")
    return raw


def _first(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
