"""The model registry: content-addressed versions, aliases that move with an audit trail, atomic publish.

Layout below ``<uri>/<model>/``::

    versions/<hex>/model/…            the bundle's files, exactly as published (its manifest lists them)
    versions/<hex>/model/signature.json  Ed25519 over the version id and the model name (engage.signing)
    versions/<hex>/<attachment>       evaluation.json, fairness.json, model_card.md, drift_reference/, …
    versions/<hex>/version.json       the commit marker, written last: a version exists iff it has one
    versions/.staging-<uuid>/         a publish in progress (never read)
    aliases/<alias>.json              which version an alias names, and who moved it last and why

The registry's audit records (publishes, alias moves, promotions, rollbacks, deployments) go to the one
audit trail of the installation (:class:`engage.governance.AuditTrail`: hash-chained, in the governance
database), with the subject ``registry:<model folder URI>``. Registries written before the trail kept one
JSON object per event under ``audit/``; ``engage audit import-registry`` moves them onto the trail.

Why a commit marker: on a local directory the staged folder is renamed into place, which is atomic, but
on an object store a "rename" is a copy of every object and a delete, so a reader could see a folder
half-copied. Readers list only folders that hold ``version.json``, and ``version.json`` is written after
every other file is in place, in one whole-object write; so a version is either complete or invisible,
whatever the storage and wherever a publish stops.

Every version is signed (:mod:`engage.signing`): the signature is written with the model files, before
the commit marker, so no version is ever visible unsigned; :meth:`Registry.fetch` refuses a version that
is unsigned, signed by an unknown key, or whose signature does not match, after checking every file
against the manifest and the manifest against the id.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engage.artifacts import SIGNATURE
from engage.errors import ArtifactError, RegistryError

from ._models import AliasMove, AliasPointer, ModelVersion
from ._store import Store

if TYPE_CHECKING:
    from engage.governance import AuditTrail
    from engage.signing import Keyring, Signature, Signer, SigningSettings

__all__ = ["ALIASES", "Registry"]

#: the aliases promotion uses; any other valid name may be set with :meth:`Registry.set_alias`
ALIASES = ("candidate", "production", "previous")
VERSION_FILE = "version.json"
#: the attachment that names customers: the quality gate's sample of failing rows' keys
QUALITY_REPORT = "quality_report.json"
MODEL_FOLDER = "model"
MIN_PREFIX = 12

_HEX = re.compile(r"[0-9a-fA-F]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RESERVED = frozenset({MODEL_FOLDER, VERSION_FILE})


class Registry:
    """Versioned model bundles of one model on a storage URI (a local directory, or ``s3://…``).

    Every method reads the storage afresh, so several processes (pipeline steps, servers, people) can use
    one registry at once: versions are immutable once committed, and an alias file is replaced whole.
    """

    def __init__(
        self,
        uri: str,
        *,
        model: str = "customers",
        storage_options: dict[str, Any] | None = None,
        trail: AuditTrail | None = None,
        signing: SigningSettings | None = None,
    ) -> None:
        """``signing``: the keys that sign and verify versions (default: ``ENGAGE_SIGNING_*``, read when
        one is needed)."""
        if not _NAME.fullmatch(model):
            raise RegistryError(
                f"model name {model!r}: use letters, digits, '.', '_' and '-' (a folder of the registry)",
                http_status=400,
            )
        self.model = model
        self._store = Store(uri, storage_options)
        self._root = self._store.path(model)
        self._trail = trail
        self._signing = signing

    @property
    def uri(self) -> str:
        """The registry's storage, with its protocol (``file:///…/registry``, ``s3://bucket/prefix``)."""
        return self._store.url(self._store.root)

    @property
    def location(self) -> str:
        """The model's folder in the registry, with its protocol (``s3://bucket/prefix/customers``)."""
        return self._store.url(self._root)

    def __repr__(self) -> str:
        return f"Registry({self.uri!r}, model={self.model!r})"

    # --- publish ---------------------------------------------------------------------------------------

    def publish(
        self,
        bundle_dir: Path,
        *,
        attachments: Mapping[str, Path] = {},
        metadata: Mapping[str, Any] = {},
        actor: str = "engage",
    ) -> ModelVersion:
        """Publish a verified model bundle as a version named by its content; atomic and idempotent.

        The bundle is checked against its manifest first (:class:`ArtifactError` otherwise), so a
        version's id (the SHA-256 of its manifest) vouches for every file, and the version is signed with
        the configured key (:mod:`engage.signing`; :class:`~engage.errors.ConfigError` without one when
        ``ENGAGE_SIGNING_REQUIRED``). Publishing content the registry holds already returns that version
        and writes nothing, whatever the attachments and metadata — except a signature when the stored
        one is missing or not by a trusted key (a version published before signing, or before a rotation).
        """
        from engage.artifacts import verify_manifest

        bundle_dir = Path(bundle_dir)
        verify_manifest(bundle_dir)
        version_id = _bundle_id(bundle_dir)
        sources = _attachment_sources(attachments)
        facts = _json_object(metadata, "publish metadata")
        signature = self._signer().sign(model=self.model, version=version_id)
        existing = self._read_version(_hex(version_id))
        if existing is not None:
            self._ensure_signed(existing, signature, actor)
            return existing
        version = ModelVersion(
            id=version_id,
            short_id=_hex(version_id)[:MIN_PREFIX],
            model=self.model,
            created_at=_now(),
            metadata=facts,
            attachments=tuple(sorted(sources)),
        )
        committed = self._stage_and_commit(bundle_dir, sources, version, actor, signature)
        if committed is not None:
            return committed  # a concurrent publisher committed the same content first
        return self._live(version)

    def _stage_and_commit(
        self,
        bundle_dir: Path,
        sources: dict[str, Path],
        version: ModelVersion,
        actor: str,
        signature: Signature,
    ) -> ModelVersion | None:
        """Write everything under a staging prefix, move it into place, record it, then write the marker.

        The audit record comes before the marker: a version is never visible unrecorded (a record of a
        publish that then failed says so by naming a version the registry does not hold).

        Returns the version another publisher committed meanwhile (then this one writes no marker), or
        None when this publish committed. On any failure the staging prefix is removed, and so is the
        version folder if this publish created it: nothing half-written stays, and nothing is visible.
        """
        staging = self._path("versions", f".staging-{uuid.uuid4().hex}")
        target = self._path("versions", version.hex)
        created = done = False
        try:
            self._store.put_tree(bundle_dir, f"{staging}/{MODEL_FOLDER}")
            self._store.write(f"{staging}/{MODEL_FOLDER}/{SIGNATURE}", signature.to_json().encode())
            for name, source in sources.items():
                self._store.put_tree(source, f"{staging}/{name}")
            if (other := self._read_version(version.hex)) is not None:
                done = True
                return other
            created = not self._store.exists(target)
            self._store.move_tree(staging, target)
            if (other := self._read_version(version.hex)) is not None:
                done = True
                return other
            self.record({"event": "publish", "version": version.id, "actor": actor})
            body = version.model_dump_json(exclude={"uri", "aliases"}, indent=2) + "\n"
            self._store.write(f"{target}/{VERSION_FILE}", body.encode())
            done = True
            return None
        finally:
            self._store.remove_tree(staging)
            if created and not done:
                self._store.remove_tree(target)

    # --- read ------------------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """Every committed version, newest first (folders without ``version.json`` are not versions)."""
        hexes = [n for n in self._store.children(self._path("versions")) if _is_version_folder(n)]
        return self._read_versions(hexes)

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``sha256:<hex>``, an alias, or a unique hex prefix (>= 12 characters).

        :class:`RegistryError` (404) names the ref and what the registry holds when nothing matches, and
        lists the candidates when a prefix matches several versions.
        """
        text = ref.strip()
        digits = text.removeprefix("sha256:").lower()
        if not _HEX.fullmatch(digits):
            if not text.startswith("sha256:") and _NAME.fullmatch(text):
                pointer = self._read_alias(text)
                if pointer is not None:
                    return self._aliased(pointer)
            raise self._unknown(ref)
        if len(digits) < MIN_PREFIX:
            raise RegistryError(
                f"version ref {ref!r} is too short: give sha256:<hex>, at least {MIN_PREFIX} hex characters "
                f"of it, or an alias (registry {self.location})",
                http_status=400,
            )
        folders = [
            n
            for n in self._store.children(self._path("versions"))
            if _is_version_folder(n) and n.startswith(digits)
        ]
        found = self._read_versions(folders)
        if len(found) > 1:
            listed = ", ".join(v.short_id for v in found[:5]) + (" …" if len(found) > 5 else "")
            raise RegistryError(
                f"version prefix {ref!r} is ambiguous in registry {self.location}: it matches {len(found)} "
                f"versions ({listed}); give more characters",
                http_status=400,
            )
        if not found:
            raise self._unknown(ref)
        return found[0]

    def alias(self, name: str) -> ModelVersion | None:
        """The version an alias names, or None when the alias is not set."""
        _check_alias_name(name)
        pointer = self._read_alias(name)
        return None if pointer is None else self._aliased(pointer)

    def aliases(self) -> dict[str, str]:
        """Every alias and the version id it names, by alias name."""
        return {name: p.version for name, p in sorted(self._read_aliases().items())}

    # --- aliases ---------------------------------------------------------------------------------------

    def set_alias(self, name: str, ref: str, *, reason: str, actor: str = "engage") -> AliasMove:
        """Point ``name`` at the version ``ref`` names; audited, even when it names it already."""
        _check_alias_name(name)
        target = self.get(ref)
        return self._move(name, target.id, self._read_alias(name), reason=reason, actor=actor)

    def promote(self, ref: str, *, reason: str, actor: str = "engage") -> list[AliasMove]:
        """Make ``ref`` production; the version it replaces becomes ``previous`` (the rollback target).

        Promoting the version production names already is one unchanged, audited move: ``previous``
        keeps what it names, so a rollback still has somewhere to go.
        """
        target = self.get(ref)
        production = self._read_alias("production")
        if production is not None and production.version == target.id:
            return [self._move("production", target.id, production, reason=reason, actor=actor)]
        moves = []
        if production is not None:
            previous = self._read_alias("previous")
            moves.append(self._move("previous", production.version, previous, reason=reason, actor=actor))
        moves.append(self._move("production", target.id, production, reason=reason, actor=actor))
        return moves

    def rollback(self, *, reason: str, actor: str = "engage") -> list[AliasMove]:
        """Swap ``production`` and ``previous``: the version before the last promotion serves again."""
        production = self._read_alias("production")
        previous = self._read_alias("previous")
        if previous is None or production is None:
            raise RegistryError(
                f"nothing to roll back to in registry {self.location}: "
                + ("no production alias" if production is None else "no previous alias")
                + f" (aliases: {', '.join(self.aliases()) or 'none'})",
                http_status=409,
            )
        target = self._aliased(previous)  # refuse before moving anything if it names a missing version
        self.record(
            {
                "event": "rollback",
                "from": production.version,
                "to": previous.version,
                "data_sha256": target.metadata.get("data_sha256"),
                "pipeline_run_id": target.metadata.get("pipeline_run_id"),
                "actor": actor,
                "reason": reason,
            }
        )
        return [
            self._move("production", previous.version, production, reason=reason, actor=actor),
            self._move("previous", production.version, previous, reason=reason, actor=actor),
        ]

    def _move(
        self, name: str, to_version: str, current: AliasPointer | None, *, reason: str, actor: str
    ) -> AliasMove:
        """Move one alias: the audit record first (a move is never unrecorded), then the alias file."""
        if not reason.strip() or not actor.strip():
            raise RegistryError(
                f"moving alias {name!r} needs a reason and an actor (they go to the audit trail)",
                http_status=400,
            )
        at = _now()
        before = None if current is None else current.version
        changed = before != to_version
        key = self.record(
            {
                "event": "alias",
                "alias": name,
                "from": before,
                "to": to_version,
                "changed": changed,
                "actor": actor,
                "reason": reason,
                "at": at.isoformat(),
            }
        )
        if changed:
            pointer = AliasPointer(alias=name, version=to_version, set_at=at, actor=actor, reason=reason)
            self._store.write(self._alias_path(name), (pointer.model_dump_json(indent=2) + "\n").encode())
        return AliasMove(
            alias=name,
            from_version=before,
            to_version=to_version,
            actor=actor,
            reason=reason,
            at=at,
            changed=changed,
            audit_key=key,
        )

    # --- fetch -----------------------------------------------------------------------------------------

    def fetch(self, ref: str, dest: Path) -> Path:
        """Copy the version's model files into ``dest`` (new or empty) and verify them; returns ``dest``.

        The copy is checked against its manifest, the manifest against the version id, and the version's
        signature against the id, the model name and the trusted keys, before it appears at ``dest``: a
        changed byte anywhere is an :class:`ArtifactError` naming the stored file, an unsigned version or
        a signature by an unknown key or that does not match a :class:`~engage.signing.SignatureError`,
        and ``dest`` is left as it was.
        """
        version = self.get(ref)
        return self._copy(
            version, MODEL_FOLDER, Path(dest), f"version {version.id} has no files", verify=True
        )

    def fetch_attachment(self, ref: str, name: str, dest: Path) -> Path:
        """Copy the attachment ``name`` of a version (a folder such as ``drift_reference``) into ``dest``
        (new or empty); returns ``dest``. :class:`RegistryError` (400) when the version has none."""
        version = self.get(ref)
        if name not in version.attachments:
            held = ", ".join(version.attachments) or "none"
            raise RegistryError(
                f"version {version.short_id} has no attachment {name!r} (it has: {held})", http_status=400
            )
        return self._copy(version, name, Path(dest), f"attachment {name!r} has no files", verify=False)

    def verify(self, ref: str) -> tuple[ModelVersion, Signature]:
        """Check a version as :meth:`fetch` does (every file against the manifest, the manifest against the
        id, the signature against the id, the model name and the trusted keys) without keeping the files;
        returns the version and its signature. :class:`ArtifactError` (a
        :class:`~engage.signing.SignatureError` for the signature) names the stored file."""
        import tempfile

        from engage.signing import read_signature

        version = self.get(ref)
        with tempfile.TemporaryDirectory(prefix="engage-verify-") as tmp:
            local = self.fetch(version.id, Path(tmp) / MODEL_FOLDER)
            return version, read_signature(local / SIGNATURE)

    def sign(self, ref: str, *, actor: str = "engage") -> tuple[ModelVersion, Signature]:
        """Sign a committed version again with the configured key (one published before signing, or after
        a key rotation), once its files are checked against the manifest and the manifest against the id
        (not the old signature: that may be what is being replaced). Recorded on the audit trail first
        (``signed``: version, key id, actor), then the signature is replaced whole."""
        import tempfile

        version = self.get(ref)
        signature = self._signer().sign(model=self.model, version=version.id)
        with tempfile.TemporaryDirectory(prefix="engage-sign-") as tmp:
            self._copy(version, MODEL_FOLDER, Path(tmp) / MODEL_FOLDER, "no files", verify=True, signed=False)
        self._write_signature(version, signature, actor=actor, reason="engage registry sign")
        return version, signature

    def _ensure_signed(self, version: ModelVersion, signature: Signature, actor: str) -> None:
        """Give a committed version whose stored signature is missing, malformed or not by a trusted key
        this one: the publisher holds a bundle with the very manifest the id names (checked), so it may
        vouch for it. Nothing is written when the stored signature verifies."""
        from engage.signing import SignatureError, check_signature, parse_signature

        path = self._path("versions", version.hex, MODEL_FOLDER, SIGNATURE)
        stored = self._store.read(path)
        if stored is not None:
            try:
                check_signature(
                    parse_signature(stored, path),
                    version=version.id,
                    model=self.model,
                    keyring=self._keyring(),
                    where=path,
                )
                return
            except SignatureError:
                pass  # replaced below, on the record
        self._write_signature(version, signature, actor=actor, reason="published again")

    def _write_signature(
        self, version: ModelVersion, signature: Signature, *, actor: str, reason: str
    ) -> None:
        """Record the signing, then replace ``signature.json`` whole (never a version signed unrecorded)."""
        self.record(
            {
                "event": "signed",
                "version": version.id,
                "key_id": signature.key_id,
                "actor": actor,
                "reason": reason,
            }
        )
        path = self._path("versions", version.hex, MODEL_FOLDER, SIGNATURE)
        self._store.write(path, signature.to_json().encode())

    def _signer(self) -> Signer:
        from engage.signing import load_signer

        return load_signer(self._signing)

    def _keyring(self) -> Keyring:
        from engage.signing import load_keyring

        return load_keyring(self._signing)

    def _copy(
        self, version: ModelVersion, folder: str, dest: Path, empty: str, *, verify: bool, signed: bool = True
    ) -> Path:
        """Download one folder of a version into ``dest`` (new or empty), staged: all of it or nothing."""
        from engage._io import replace_dir, staging_dir

        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise RegistryError(
                f"{dest}: not empty: a version is fetched into a new or empty folder", http_status=400
            )
        remote = self._path("versions", version.hex, folder)
        with staging_dir(dest) as staged:
            if not self._store.get_tree(remote, staged):
                raise ArtifactError(f"{self._store.url(remote)}: missing: {empty}")
            if verify:
                self._verify(staged, version, remote, signed=signed)
            replace_dir(staged, dest)
        return dest

    def _verify(self, local: Path, version: ModelVersion, remote: str, *, signed: bool = True) -> None:
        """Check fetched files against their manifest, the manifest against the id, and (``signed``) the
        signature against the id, the model name and the trusted keys; errors name the stored files."""
        from engage.artifacts import MANIFEST, verify_manifest

        try:
            verify_manifest(local)
        except ArtifactError as e:
            message = e.message.replace(str(local), self._store.url(remote), 1)
            raise ArtifactError(f"{message} (fetching {version.id})") from e
        actual = _bundle_id(local)
        if actual != version.id:
            raise ArtifactError(
                f"{self._store.url(remote)}/{MANIFEST}: SHA-256 mismatch (version {version.short_id}…, "
                f"file {_hex(actual)[:MIN_PREFIX]}…): the stored manifest was changed after publishing"
            )
        if signed:
            from engage.signing import SignatureError, verify_bundle

            if not (local / SIGNATURE).is_file():
                raise SignatureError(
                    f"{self._store.url(f'{remote}/{SIGNATURE}')}: missing: version {version.id} refused: "
                    f"unsigned (engage registry sign {version.short_id} signs it with the configured key)"
                )
            try:
                verify_bundle(local, model=self.model, keyring=self._keyring(), version=version.id)
            except SignatureError as e:
                raise SignatureError(e.message.replace(str(local), self._store.url(remote), 1)) from None

    # --- audit -----------------------------------------------------------------------------------------

    @property
    def subject(self) -> str:
        """This registry's subject on the audit trail: ``registry:<model folder URI>``."""
        return f"registry:{self.location}"

    @property
    def trail(self) -> AuditTrail:
        """The audit trail the registry records to (default: the governance database of the settings,
        ``ENGAGE_GOVERNANCE_DATABASE_URL``)."""
        if self._trail is None:
            from engage.governance import AuditTrail, open_database

            self._trail = AuditTrail(open_database())
        return self._trail

    def record(self, event: Mapping[str, Any]) -> str:
        """Append one record to the audit trail; returns its key (``seq:<n>``).

        ``model`` and ``registry`` are added unless the event gives them; the actor is the event's
        ``actor`` (else ``engage``). One transaction: when the database is down the record is not written
        and :class:`~engage.errors.GovernanceError` (503) says so; an alias never moves unrecorded.
        """
        body = _json_object(event, "audit event")
        body.setdefault("model", self.model)
        body.setdefault("registry", self.location)
        kind = str(body.get("event") or "note")
        entry = self.trail.append(
            kind, actor=str(body.get("actor") or "engage"), subject=self.subject, payload=body
        )
        return f"seq:{entry.seq}"

    def audit(self) -> list[dict[str, Any]]:
        """This registry's audit records, oldest first: each payload with its ``key``, ``seq`` and ``at``
        (``payload`` is empty once purged past retention: ``redacted`` then says so)."""
        records = []
        for entry in self.trail.records(subject=self.subject):
            record = dict(entry.payload or {"event": entry.event, "redacted": entry.redacted})
            record.setdefault("at", entry.to_json()["at"])
            records.append({**record, "key": f"seq:{entry.seq}", "seq": entry.seq})
        return records

    def legacy_audit(self) -> list[tuple[str, dict[str, Any]]]:
        """The ``audit/*.json`` objects a registry wrote before the audit trail, oldest first, as
        ``(key, record)``: what ``engage audit import-registry`` moves onto the trail."""
        names = [n for n in self._store.children(self._path("audit")) if _is_record(n)]
        paths = {self._path("audit", n): f"audit/{n}" for n in names}
        found = self._store.read_many(paths)
        return [
            (key, _parse_json(found[path], self._store.url(path)))
            for path, key in paths.items()
            if path in found
        ]

    def remove_legacy_audit(self, key: str) -> None:
        """Delete one legacy ``audit/*.json`` object (after it is on the trail)."""
        if not key.startswith("audit/") or not _is_record(key.removeprefix("audit/")):
            raise RegistryError(f"{key!r} is not a legacy audit record key", http_status=400)
        self._store.remove(self._path(key))

    # --- customers named in attachments (data-subject rights) -------------------------------------------

    def customer_mentions(self, customer_id: str) -> list[dict[str, Any]]:
        """Where a version's attachments name the customer: the quality gate's report keeps the keys of
        a few failing rows per check (``sample_keys``); every other attachment is aggregate or keyless.
        One ``{"version", "attachment", "check"}`` per mention."""
        mentions = []
        for version, _path, report in self._quality_reports():
            for result in report.get("results", []):
                if any(_names(str(k), customer_id) for k in result.get("sample_keys") or []):
                    mentions.append(
                        {"version": version.id, "attachment": QUALITY_REPORT, "check": result.get("id")}
                    )
        return mentions

    def mask_customer(self, customer_id: str) -> int:
        """Replace the customer id by its mask in every quality report naming it; returns the reports
        rewritten (each replaced whole). A version's id covers its model bundle, not its attachments, so
        the version still verifies: erasure is the one change ever made to a published version."""
        from engage.privacy import mask

        rewritten = 0
        for _version, path, report in self._quality_reports():
            changed = False
            for result in report.get("results", []):
                keys = result.get("sample_keys") or []
                new = [mask(k) if _names(str(k), customer_id) else k for k in keys]
                if new != keys:
                    result["sample_keys"], changed = new, True
            if changed:
                self._store.write(path, (json.dumps(report, indent=2) + "\n").encode())
                rewritten += 1
        return rewritten

    def _quality_reports(self) -> list[tuple[ModelVersion, str, dict[str, Any]]]:
        """Each version's quality report: ``(version, its storage path, its content)``."""
        found = []
        for version in self.versions():
            if QUALITY_REPORT in version.attachments:
                path = self._path("versions", version.hex, QUALITY_REPORT)
                data = self._store.read(path)
                if data is not None:
                    found.append((version, path, _parse_json(data, self._store.url(path))))
        return found

    # --- internals -------------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self._root, *parts])

    def _alias_path(self, name: str) -> str:
        return self._path("aliases", f"{name}.json")

    def _read_version(self, hex_id: str) -> ModelVersion | None:
        found = self._read_versions([hex_id])
        return found[0] if found else None

    def _read_versions(self, hexes: list[str]) -> list[ModelVersion]:
        """The committed versions among the folders ``hexes``, newest first, with uri and aliases."""
        if not hexes:
            return []
        paths = {self._path("versions", h, VERSION_FILE): h for h in hexes}
        found = self._store.read_many(paths)
        if not found:
            return []
        held: dict[str, list[str]] = {}
        for name, pointer in sorted(self._read_aliases().items()):
            held.setdefault(pointer.version, []).append(name)
        versions = []
        for path, data in found.items():
            version = self._parse_version(data, path, paths.get(path))
            uri = self._store.url(self._path("versions", version.hex))
            versions.append(
                version.model_copy(update={"uri": uri, "aliases": tuple(held.get(version.id, ()))})
            )
        return sorted(versions, key=lambda v: (v.created_at, v.id), reverse=True)

    def _parse_version(self, data: bytes, path: str, folder: str | None) -> ModelVersion:
        where = self._store.url(path)
        try:
            version = ModelVersion.model_validate_json(data)
        except ValidationError as e:
            raise ArtifactError(f"{where}: corrupt: not a version record ({_first_error(e)})") from e
        if folder is not None and version.hex != folder:
            raise ArtifactError(f"{where}: corrupt: it names version {version.id}, not its folder")
        return version

    def _live(self, version: ModelVersion) -> ModelVersion:
        """A version as readers see it now (its uri, the aliases it holds)."""
        found = self._read_version(version.hex)
        if found is None:  # committed a moment ago: only a concurrent delete gets here
            raise self._unknown(version.id)
        return found

    def _read_alias(self, name: str) -> AliasPointer | None:
        data = self._store.read(self._alias_path(name))
        return None if data is None else self._parse_alias(data, self._alias_path(name))

    def _read_aliases(self) -> dict[str, AliasPointer]:
        names = [
            n.removesuffix(".json")
            for n in self._store.children(self._path("aliases"))
            if n.endswith(".json") and not n.startswith(".")
        ]
        found = self._store.read_many(self._alias_path(n) for n in names)
        return {n: self._parse_alias(found[p], p) for n in names if (p := self._alias_path(n)) in found}

    def _parse_alias(self, data: bytes, path: str) -> AliasPointer:
        try:
            return AliasPointer.model_validate_json(data)
        except ValidationError as e:
            raise ArtifactError(
                f"{self._store.url(path)}: corrupt: not an alias record ({_first_error(e)})"
            ) from e

    def _aliased(self, pointer: AliasPointer) -> ModelVersion:
        version = self._read_version(_hex(pointer.version))
        if version is None:
            raise ArtifactError(
                f"{self._store.url(self._alias_path(pointer.alias))}: alias {pointer.alias!r} names "
                f"{pointer.version}, which registry {self.location} does not hold"
            )
        return version

    def _unknown(self, ref: str) -> RegistryError:
        count = len(self.versions())
        names = ", ".join(self.aliases()) or "none"
        return RegistryError(
            f"no version or alias {ref!r} in registry {self.location} (versions: {count}, aliases: {names})"
        )


# --- helpers -------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _hex(version_id: str) -> str:
    return version_id.removeprefix("sha256:")


def _bundle_id(directory: Path) -> str:
    """The bundle's version, exactly :func:`engage.training.bundle_version` (the SHA-256 of its manifest).

    Computed here because importing :mod:`engage.training` loads pandas and xgboost, which a server
    fetching its model, or ``engage registry list``, does not need. A test holds the two equal.
    """
    from engage._io import sha256_file
    from engage.artifacts import MANIFEST

    return f"sha256:{sha256_file(Path(directory) / MANIFEST)}"


def _names(key: str, customer_id: str) -> bool:
    """Whether a quality report's sample key names the customer (a key of several columns is joined
    with ``|``)."""
    return key == customer_id or customer_id in key.split("|")


def _is_version_folder(name: str) -> bool:
    return len(name) == 64 and _HEX.fullmatch(name) is not None and name == name.lower()


def _is_record(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def _check_alias_name(name: str) -> None:
    """Alias names are folder-safe and never all hex, so a ref is an alias or a version, never both."""
    if not _NAME.fullmatch(name) or name.endswith(".json") or _HEX.fullmatch(name):
        raise RegistryError(
            f"alias name {name!r}: use letters, digits, '.', '_' and '-', not only hex digits "
            f"(for example {', '.join(ALIASES)})",
            http_status=400,
        )


def _attachment_sources(attachments: Mapping[str, Path]) -> dict[str, Path]:
    """Attachment names (one path component; a trailing '/' is allowed) and their existing sources."""
    sources: dict[str, Path] = {}
    for raw, source in attachments.items():
        name = raw.rstrip("/")
        if not _NAME.fullmatch(name) or name in _RESERVED:
            raise RegistryError(
                f"attachment name {raw!r}: one file or folder name of letters, digits, '.', '_' and '-', "
                f"not {' or '.join(sorted(_RESERVED))}",
                http_status=400,
            )
        if name in sources:
            raise RegistryError(f"attachment {name!r} is given twice", http_status=400)
        path = Path(source)
        if not path.is_file() and not path.is_dir():
            raise RegistryError(f"attachment {name!r}: {path}: no such file or folder", http_status=400)
        sources[name] = path
    return sources


def _json_object(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A plain JSON copy of ``value``; :class:`RegistryError` naming what is not JSON."""
    try:
        data: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=True))
    except (TypeError, ValueError) as e:
        raise RegistryError(f"{what} is not JSON: {e}", http_status=400) from e
    return data


def _parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as e:
        raise ArtifactError(f"{where}: corrupt: not valid JSON ({e})") from e
    if not isinstance(value, dict):
        raise ArtifactError(f"{where}: corrupt: not a JSON object")
    return value


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(p) for p in first["loc"]) or "(top)"
    return f"{location}: {first['msg']}"
