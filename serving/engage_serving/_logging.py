"""Structured JSON logs for the servers, with personal data masked before any handler sees it.

Every line is one JSON object (python-json-logger): ``time``, ``level``, ``logger``, ``message`` and the
record's extra fields. :class:`MaskPII` runs as a filter on every handler, so KServe's, uvicorn's and
Engage's own lines are all masked: e-mail addresses and phone numbers anywhere in a message, and the
value of every field the contract marks as personal data (``role: pii``) or as the customer key
(``role: id``, replaced by a short keyed hash so lines about one customer can still be joined).
"""

from __future__ import annotations

import hashlib
import logging
import logging.config
import re
from collections.abc import Iterable
from functools import partial
from typing import Any

__all__ = ["MaskPII", "configure_logging", "mask_text"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# E.164 and common national forms: a + or a long run of digits with separators
_PHONE = re.compile(r"(?<![\w.])\+?\d[\d ()-]{7,}\d(?![\w.])")
_MASK = "***"
#: fields every server masks whatever the contract says
DEFAULT_PII_FIELDS = frozenset({"email", "phone", "full_name", "address"})
#: attributes every LogRecord has: never personal data, never masked
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_text(text: str) -> str:
    """``text`` with e-mail addresses and phone numbers replaced by ``***``."""
    if "@" in text:
        text = _EMAIL.sub(_MASK, text)
    return _PHONE.sub(_MASK, text)


def pseudonym(value: Any) -> str:
    """A short stable stand-in for an identifier (the first 12 hex digits of its SHA-256)."""
    return "id:" + hashlib.sha256(str(value).encode()).hexdigest()[:12]


class MaskPII(logging.Filter):
    """Mask personal data in a record's message and in its extra fields, in place."""

    def __init__(self, pii_fields: Iterable[str] = (), id_fields: Iterable[str] = ()) -> None:
        super().__init__()
        self.pii_fields = (frozenset(pii_fields) | DEFAULT_PII_FIELDS) - _RECORD_FIELDS
        self.id_fields = frozenset(id_fields) - _RECORD_FIELDS

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        for name in self.pii_fields | self.id_fields:
            if name in message:
                pattern = rf"(['\"]?{re.escape(name)}['\"]?\s*[:=]\s*)(?:(['\"])(.*?)\2|([^,'\"}}\s]+))"
                masked = re.sub(pattern, partial(self._substitute, name), masked)
        record.msg, record.args = masked, None
        for key in self.pii_fields | self.id_fields:
            if key in record.__dict__:
                record.__dict__[key] = self._replace(key, record.__dict__[key])
        return True

    def _substitute(self, field: str, match: re.Match[str]) -> str:
        key, quote, quoted, bare = match.groups()
        if quote:
            return f"{key}{quote}{self._replace(field, quoted)}{quote}"
        return f"{key}{self._replace(field, bare)}"

    def _replace(self, field: str, value: Any) -> str:
        return pseudonym(value) if field in self.id_fields else _MASK


def configure_logging(
    *, fmt: str = "json", level: str = "INFO", pii_fields: Iterable[str] = (), id_fields: Iterable[str] = ()
) -> None:
    """Route the root, KServe and uvicorn loggers to one stderr handler in ``fmt`` with PII masked."""
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"pii": {"()": MaskPII, "pii_fields": list(pii_fields), "id_fields": list(id_fields)}},
            "formatters": {"engage": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "engage",
                    "filters": ["pii"],
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["stderr"], "level": level},
            "loggers": {
                name: {"handlers": [], "propagate": True, "level": level}
                for name in (
                    "kserve",
                    "kserve.trace",
                    "uvicorn",
                    "uvicorn.error",
                    "uvicorn.access",
                    "engage",
                    "engage_serving",
                    "py.warnings",
                )
            },
        }
    )
    logging.captureWarnings(True)  # library warnings become log lines too (JSON, masked), not raw stderr
    # KServe logs one trace line per request at INFO: keep it for DEBUG only
    logging.getLogger("kserve.trace").setLevel(max(logging.getLevelName(level), logging.WARNING))
