"""The one exception hierarchy of Engage.

Every error a user can cause derives from :class:`EngageError` and carries a message that can be shown
as one line. Entry points map them in one place: the CLI prints the line and exits 2, servers (later)
map :attr:`EngageError.http_status` to a response.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ContractError",
    "DataError",
    "DeployError",
    "EngageError",
    "ExplainError",
    "GovernanceError",
    "RegistryError",
    "RequestRejected",
    "SchemaError",
    "StorageError",
    "TableRefused",
    "TrainingError",
]


class EngageError(Exception):
    """Base class of every error Engage raises on purpose."""

    #: HTTP status a server answers with when this error reaches it.
    http_status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ContractError(EngageError):
    """A data contract file is missing, is not valid YAML, or breaks the contract schema.

    ``problems`` holds one ``"key.path: what was expected"`` line per problem; the message starts with
    the file name.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        if len(problems) == 1:
            message = f"{source}: {problems[0]}"
        else:
            listed = "\n".join(f"  - {p}" for p in problems)
            message = f"{source}: {len(problems)} problems\n{listed}"
        super().__init__(message)


class DataError(EngageError):
    """A data file is missing, unreadable or in a format Engage does not read."""


class SchemaError(EngageError):
    """A table cannot be checked against its contract at all (for example: it has no rows)."""

    http_status = 422


class TrainingError(EngageError):
    """A prediction head cannot be trained on this table: the message names the head and the reason
    (its target column is absent, its label has one class, too few rows are left for the split, or
    the table failed its data contract)."""

    http_status = 422

    def __init__(self, message: str, *, head: str | None = None) -> None:
        super().__init__(message)
        self.head = head


class TableRefused(TrainingError):
    """The table failed its data contract, so nothing was trained (the CLI exits 1: a gate said no)."""


class ConfigError(EngageError):
    """A setting or command-line value is out of range or inconsistent."""


class ArtifactError(EngageError):
    """A saved model artifact is missing, corrupt, changed after it was written, or holds untrusted types.

    The message names the file and what is wrong on one line. A server whose model cannot be loaded is
    not ready: it answers 503, never a 4xx (the caller did nothing wrong).
    """

    http_status = 503  # a server with a bad model is not ready


class ExplainError(EngageError):
    """An explanation that cannot be given as asked.

    An unknown method, a method that does not apply to the model (exact TreeSHAP of a model that is not
    a tree ensemble Engage can read), a method the licence setting excludes, an optional library that is
    not installed, or a customer id the table does not hold. A counterfactual that cannot be found is
    not an error: it is an explicit "none found within budget" result.
    """

    http_status = 400


class StorageError(EngageError):
    """A write failed because the storage is full (no space left, quota exceeded, or a file-size limit).

    The message names the destination; nothing was left half-written there (engage._io). Not a bug: the
    CLI prints the line and exits 2; a server answers 507.
    """

    http_status = 507


class RegistryError(EngageError):
    """A model registry cannot do what was asked: an unknown or ambiguous version or alias, no previous
    version to roll back to, or a publish with unusable inputs.

    The message names the ref and lists what the registry holds, so a typo is visible at once. Unknown
    refs are the common case, hence 404; a request that can never succeed (a bad alias name, a missing
    attachment) is 400, and a rollback with no previous version 409 (``http_status=`` per instance).
    """

    http_status = 404

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status


class DeployError(EngageError):
    """The cluster could not be reached or refused the InferenceService (the message says which).

    A kubeconfig that is missing or holds no such context, an API server that cannot be reached, or an
    API answer that is not a success (forbidden, refused by the webhook, conflict).
    """

    http_status = 502  # the upstream (Kubernetes API) failed, not the caller's request


class RequestRejected(EngageError):
    """A server refused a request before doing any work on it; nothing was predicted or recorded.

    ``http_status`` is 400 for a body that is not what the protocol says (malformed JSON, no
    ``instances``), 413 for a body or row count over the server's limits, and 422 for rows that break
    the data contract. ``reason`` is the label of ``engage_request_rejected_total``; ``details`` holds
    one ``{"row", "field", "error"}`` object per problem found (at most a few dozen).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 422,
        reason: str = "schema",
        details: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.reason = reason
        self.details = details or []

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.message, "reason": self.reason}
        if self.details:
            body["details"] = self.details
        return body


class GovernanceError(EngageError):
    """The governance store (audit trail, review queue, data-subject records, API tokens) refused a
    request or cannot be reached.

    ``http_status`` per instance: 404 for an unknown customer, review item or token; 409 for a review
    item someone else decided first; 401 / 403 for a missing, malformed, expired or insufficient token;
    503 when the database is down (then nothing was written: every change is one transaction).
    """

    http_status = 400

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status
