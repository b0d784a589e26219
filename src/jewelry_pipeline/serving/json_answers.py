"""The JSON the service writes: ASCII-safe whatever the input held, with every echoed value quoted
and cut, so an answer (and its log line) never fails on what a client sent."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

ECHO_LIMIT = 100  # characters of a client's value an answer repeats
CAUSE_LIMIT = 200  # characters of an exception's first line an answer publishes


def printable(text: str) -> str:
    """`text` with lone surrogates and other unencodable code points as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def quoted(value: Any, limit: int = ECHO_LIMIT) -> str:
    """A client's value as an answer may repeat it: quoted, printable, at most `limit`
    characters (then '...' and the full length)."""
    text = printable(str(value))
    if len(text) > limit:
        return f"'{text[:limit]}'... ({len(text)} characters)"
    return f"'{text}'"


def short_cause(kind: str, message: str) -> str:
    """An error as the public may read it: its kind and the first line of its message, cut."""
    lines = printable(message).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > CAUSE_LIMIT:
        first = first[:CAUSE_LIMIT] + "..."
    return f"{kind}: {first}" if first else kind


class SafeJSONResponse(JSONResponse):
    """A JSON answer written ASCII-safe: a lone surrogate or NUL in a value cannot break it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("ascii")


def error_answer(status: int, message: str, reason: str, headers=None) -> SafeJSONResponse:
    """The body every refusal gets: `{"error": ..., "reason": ...}`."""
    return SafeJSONResponse(
        {"error": message, "reason": reason}, status_code=status, headers=headers
    )
