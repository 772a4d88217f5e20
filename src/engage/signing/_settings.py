"""Where the signing keys are, read from ``ENGAGE_SIGNING_*`` variables when a command or server starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engage.errors import ConfigError

__all__ = ["SigningSettings", "signing_settings"]


class SigningSettings(BaseSettings):
    """The private key that signs registry versions and the public keys that verify them.

    Nothing here is required on a laptop: without a configured key the registry signs with a development
    key generated on first use under ``dev_dir`` (and says so with a WARNING), and verifies with its public
    half. A cluster sets ``required`` (the chart does): then only configured keys count.
    """

    model_config = SettingsConfigDict(env_prefix="ENGAGE_SIGNING_", extra="forbid", frozen=True)

    key: SecretStr | None = Field(
        default=None,
        description="The Ed25519 private key that signs (PEM, PKCS#8, or the raw 32 bytes in base64): only "
        "where versions are published or re-signed",
    )
    key_file: Path | None = Field(
        default=None, description="A file holding the private key (a mounted Kubernetes Secret)"
    )
    public_keys: str = Field(
        default="",
        description="Trusted Ed25519 public keys: PEM blocks, or raw 32 bytes in base64 separated by commas "
        "or white space. Several keys: a rotation (versions signed by either verify)",
    )
    public_keys_file: Path | None = Field(
        default=None,
        description="A file of public keys as above, or a folder whose every file holds some (a mounted "
        "Secret with one key per entry)",
    )
    required: bool = Field(
        default=False,
        description="Only configured keys count: never generate or use the development key, and refuse an "
        "unsigned model folder whatever allow_unsigned says (the chart sets it in every server)",
    )
    allow_unsigned: bool = Field(
        default=False,
        description="Development only: a server may load an unsigned model folder given as --model_dir "
        "(a raw training output), with a WARNING. A signed folder is still verified, and a registry "
        "version is never loaded unsigned",
    )
    dev_dir: Path = Field(
        default=Path("artifacts/signing"),
        description="Where the development key pair is generated on first use (no key configured)",
    )


def signing_settings() -> SigningSettings:
    """The settings from the environment; :class:`ConfigError` naming the variable when one is invalid."""
    try:
        return SigningSettings()
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"ENGAGE_SIGNING_{field.upper()}: {first['msg']}") from None
