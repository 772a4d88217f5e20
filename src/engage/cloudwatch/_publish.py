"""PutMetricData through boto3: the client, what an error means, and retries with backoff and jitter.

botocore's own retries are off (one attempt per call): the bridge retries itself so that it can count
the throttled calls and retries, stop a backoff on SIGTERM, and leave a stalled batch in the buffer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engage.errors import ConfigError, EngageError

from ._settings import CloudWatchSettings

__all__ = [
    "CredentialsError",
    "DeliveryError",
    "Verdict",
    "backoff",
    "classify",
    "make_client",
]

#: error codes CloudWatch (and AWS' common errors) use for throttling
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
#: codes that mean the credentials are missing, wrong or expired: no retry helps
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException",
        "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException", "SignatureDoesNotMatch",
        "MissingAuthenticationToken", "IncompleteSignature", "NotAuthorized",
    }
)  # fmt: skip


class CredentialsError(EngageError):
    """AWS credentials are missing, or CloudWatch refused them (the buffer keeps every datum)."""

    http_status = 401


class DeliveryError(EngageError):
    """CloudWatch did not accept a batch within the retries (the buffer keeps every datum)."""

    http_status = 503


Verdict = Literal["throttled", "retry", "credentials", "invalid"]


@dataclass(frozen=True)
class Failure:
    verdict: Verdict
    detail: str


def make_client(settings: CloudWatchSettings) -> Any:
    """A CloudWatch client; one clear error when boto3, a region or credentials are missing."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError("the CloudWatch bridge needs boto3: pip install 'engage[aws]'") from None
    session = boto3.session.Session(region_name=settings.region or None)
    if not session.region_name:
        raise ConfigError("no AWS region: set ENGAGE_CLOUDWATCH_REGION (or AWS_REGION)")
    if session.get_credentials() is None:
        raise CredentialsError(
            "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or IRSA on EKS)"
        )
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.timeout_seconds,
        read_timeout=settings.timeout_seconds,
    )
    return session.client("cloudwatch", endpoint_url=settings.endpoint_url or None, config=config)


def classify(error: Exception) -> Failure | None:
    """What a failed call means; ``None``: not an AWS/transport error (a bug, raised again)."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        CredentialRetrievalError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return Failure("credentials", str(error))
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(error.response.get("Error", {}).get("Message", "")).splitlines()[0:1]
        detail = f"{code or status}: {message[0] if message else ''}".rstrip(": ")
        if code in THROTTLING_CODES or status == 429:
            return Failure("throttled", detail)
        if code in CREDENTIAL_CODES or status in (401, 403):
            return Failure("credentials", detail)
        if status >= 500 or code in ("InternalServiceError", "InternalFailure", "ServiceUnavailable"):
            return Failure("retry", detail)
        return Failure("invalid", detail)
    if isinstance(error, BotoCoreError):  # endpoint unreachable, connection reset, read timeout
        return Failure("retry", f"{type(error).__name__}: {error}")
    return None


def backoff(
    attempt: int, base: float, cap: float, rand: Callable[[float, float], float] = random.uniform
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rand(0.0, min(cap, base * (2.0**attempt)))
