"""Cell records on disk (``runs/<row>-seed<seed>.json``, written atomically) and their status."""

import json
import os
from datetime import datetime, timezone

from recbole_bbq.data.io import write_text_atomic

STATUS_OK = "ok"
STATUS_FAILED = "failed"
# Row statuses besides ok/failed: some seeds failed, or no seed has a record at all.
STATUS_PARTIAL = "partial"
STATUS_NOT_RUN = "not run"
# Longest error text in the Markdown table and the progress log (JSON and CSV keep it whole).
MAX_ERROR_CHARS = 160
# A record's per-user test values (absent from records written before they were kept).
PER_USER_KEY = "test_per_user"


def run_file(out_dir, model, seed):
    """Path of one cell's JSON record."""
    return os.path.join(out_dir, "runs", f"{model}-seed{seed}.json")


def read_run(path):
    """A cell's stored record, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_json_atomic(path, value):
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


def json_roundtrip(value):
    """``value`` as it reads back from JSON (tuples become lists, odd objects strings)."""
    return json.loads(json.dumps(value, default=str))


def per_user_last(record):
    """``record`` with its per-user values moved last, so that its JSON opens with the summary."""
    if PER_USER_KEY in record:
        record[PER_USER_KEY] = record.pop(PER_USER_KEY)
    return record


def is_ok(record):
    """True for the record of a cell that finished (None, a missing record, is not)."""
    return (record or {}).get("status") == STATUS_OK


def now():
    """The current UTC time, ISO 8601 to the second (a record's ``started_at``/``finished_at``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def error_text(error):
    """``<Type>: <last line of the message>`` of an exception."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def shorten(text, limit=MAX_ERROR_CHARS):
    """``text`` cut to ``limit`` characters (with ``...``)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
