"""Logging of every callscreen process: JSON lines in ``<state_dir>/logs/<component>.log``.

Modules log phone numbers only through ``features.pseudonym.KeyedHasher``. As defence in
depth, every handler installed here carries :class:`RedactingFilter`, which replaces
anything that looks like a phone number (E.164, or a bare run of 10-15 digits) in the
message, its arguments and any traceback with ``num:<keyed hash>``, so that one careless
``log.info("%s", number)`` cannot leak a subscriber's number into a log file.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from pathlib import Path
from typing import Final

from features.pseudonym import KeyedHasher

# E.164 ("+" then 7-15 digits) anywhere, or a bare 10-15 digit run not inside a longer
# alphanumeric token (so hex digests, which may contain digit runs, are left alone).
PHONE_LIKE: Final = re.compile(r"\+[1-9][0-9]{6,14}(?![0-9])|(?<![0-9A-Za-z])[0-9]{10,15}(?![0-9A-Za-z])")

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_MANAGED: Final = "_callscreen_managed"


def redact(text: str, hasher: KeyedHasher) -> str:
    """Replace phone-number-like substrings by ``num:<16 hex>`` keyed hashes.

    >>> h = KeyedHasher(b"k" * 32, "log")
    >>> redact("call from +77011234567 to 112", h).startswith("call from num:")
    True
    """
    return PHONE_LIKE.sub(lambda m: "num:" + hasher.short(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Rewrites a record so that its message, extras and traceback carry no raw phone number."""

    def __init__(self, hasher: KeyedHasher) -> None:
        super().__init__()
        self.hasher = hasher

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_callscreen_redacted", False):
            return True
        record.msg = redact(record.getMessage(), self.hasher)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None  # the formatted text below is what gets written
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.hasher)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.hasher)
        for key, value in list(vars(record).items()):
            if key in _STANDARD_ATTRS or key.startswith("_") or value is None or isinstance(value, bool):
                continue
            # Numbers are redacted too (an int msisdn is still a phone number); containers
            # are written as their redacted repr.
            text = value if isinstance(value, str) else repr(value)
            redacted = redact(text, self.hasher)
            if isinstance(value, str) or redacted != text or not isinstance(value, (int, float)):
                setattr(record, key, redacted)
        record._callscreen_redacted = True
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts (RFC 3339, UTC), level, logger, component, pid, msg, extras."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "component": self.component,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key != "color_message":
                line[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def log_file(state_dir: Path, component: str) -> Path:
    """Where ``component`` writes its JSON lines."""
    return state_dir / "logs" / f"{component}.log"


def configure(
    *,
    state_dir: Path,
    component: str,
    hash_key: bytes,
    level: str = "INFO",
    stderr: bool = True,
) -> Path:
    """Install the JSON-lines file handler (and a stderr one) on the root logger; idempotent.

    Returns the path of the log file.
    """
    hasher = KeyedHasher(hash_key, "log")
    path = log_file(state_dir, component)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MANAGED, False)]:
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.addFilter(RedactingFilter(hasher))
        handler.setFormatter(JsonLinesFormatter(component))
        setattr(handler, _MANAGED, True)
        root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter at INFO (kafka-python logs every connection) drowns our own lines.
    for noisy in ("kafka", "urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    return path
