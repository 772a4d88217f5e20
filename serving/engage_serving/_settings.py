"""Settings every Engage server shares, read from ``ENGAGE_SERVING_*`` variables (flags override them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServingSettings"]


class ServingSettings(BaseSettings):
    """Limits and logging of the predictor, explainer and drift detector.

    The body and row limits are checked before a request body is parsed: a larger request gets 413.
    """

    model_config = SettingsConfigDict(env_prefix="ENGAGE_SERVING_", extra="forbid", frozen=True)

    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body a server reads (bytes); 413 above"
    )
    max_rows: int = Field(default=10_000, ge=1, description="Most rows one request may carry; 413 above")
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per log line (PII masked); text: KServe's format"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    fast_routes: bool = Field(
        default=True,
        description="The predictor answers V1 :predict and V2 /infer JSON on Engage's HTTP layer (the "
        "statuses and bodies of KServe's FastAPI routes, at a fraction of their overhead); false: every "
        "request goes through KServe's data plane",
    )
    access_log: bool = Field(
        default=False, description="One log line per HTTP request (uvicorn's access log); off for speed"
    )
    drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="After SIGTERM, keep answering this long at most before the listener closes: readiness "
        "answers 503 and every answer closes its connection, so the load balancer stops sending first "
        "(0: stop at once, uvicorn's own graceful stop)",
    )
    drain_quiet_seconds: float = Field(
        default=1.0,
        gt=0,
        description="End the drain sooner once no request has arrived for this long (set it to "
        "drain_seconds for a fixed drain)",
    )
    shutdown_timeout_seconds: int = Field(
        default=20,
        ge=1,
        description="Then wait this long at most for the requests in flight to be answered; drain plus "
        "this must stay under the pod's terminationGracePeriodSeconds (30 by default)",
    )
