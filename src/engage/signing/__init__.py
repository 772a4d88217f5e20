"""Signed model versions: Ed25519 over the version id and the model name.

A version's id is the SHA-256 of its bundle's ``manifest.json``, which lists the SHA-256 of every file,
so one signature over ``{"type", "model", "version"}`` vouches for every byte of the model. The registry
signs at publish (before the version's commit marker) and verifies at fetch; the servers verify what they
load (:func:`verify_model_dir`). Keys come from ``ENGAGE_SIGNING_*`` (:class:`SigningSettings`): the
private key from a Secret for the publisher, one or several public keys (rotation) for the verifiers.
Without a configured key, a development key pair is generated under ``artifacts/signing/`` and used with
a WARNING. See docs/registry.md. ``cryptography`` is imported inside the functions that need it.
"""

from ._keys import generate_keypair, key_id, read_public_keys
from ._settings import SigningSettings, signing_settings
from ._signature import (
    PAYLOAD_TYPE,
    SIGNATURE_FILE,
    Keyring,
    Signature,
    SignatureError,
    SignedPayload,
    Signer,
    check_signature,
    load_keyring,
    load_signer,
    parse_signature,
    read_signature,
    sign_bundle,
    verify_bundle,
    verify_model_dir,
)

__all__ = [
    "PAYLOAD_TYPE",
    "SIGNATURE_FILE",
    "Keyring",
    "Signature",
    "SignatureError",
    "SignedPayload",
    "Signer",
    "SigningSettings",
    "check_signature",
    "generate_keypair",
    "key_id",
    "load_keyring",
    "load_signer",
    "parse_signature",
    "read_public_keys",
    "read_signature",
    "sign_bundle",
    "signing_settings",
    "verify_bundle",
    "verify_model_dir",
]
