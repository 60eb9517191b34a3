"""Structured JSON logging. The request id and the account id ride in context variables, so every
line logged while serving a request or running a job carries them without being passed around."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
account_id_var: ContextVar[int | None] = ContextVar("account_id", default=None)

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "request_id", "account_id"}


def _stamp_context(factory):
    """Records carry the ids current when they were *created*, whoever formats them later."""

    def make_record(*args, **kwargs):
        record = factory(*args, **kwargs)
        record.request_id = request_id_var.get()
        record.account_id = account_id_var.get()
        return record

    make_record.stamps_context = True
    return make_record


if not getattr(logging.getLogRecordFactory(), "stamps_context", False):
    logging.setLogRecordFactory(_stamp_context(logging.getLogRecordFactory()))


def bind_account(account_id: int | None) -> None:
    account_id_var.set(account_id)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        if (account_id := getattr(record, "account_id", None)) is not None:
            line["account_id"] = account_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    # Our middleware writes the access line (with request id, masked path); uvicorn's would not.
    logging.getLogger("uvicorn.access").disabled = True
