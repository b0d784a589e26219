"""A header timeout for Uvicorn's HTTP protocol, which has none: a connection must send a complete
request head within `seconds` of opening (or of starting its next request), else it is closed.

Uvicorn closes idle keep-alive connections between requests, but a fresh connection that sends
nothing, or sends its headers a line every two seconds, was held for over a minute (#31). BentoML
passes no such setting, so the protocol class BentoML's workers use (httptools) is patched here.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def install_header_timeout(seconds: float) -> None:
    """Give Uvicorn's httptools protocol a header deadline of `seconds` (idempotent)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    if getattr(HttpToolsProtocol, "_jewelry_header_timeout", None) is not None:
        HttpToolsProtocol._jewelry_header_timeout = float(seconds)
        return
    made = HttpToolsProtocol.connection_made
    lost = HttpToolsProtocol.connection_lost
    begin = HttpToolsProtocol.on_message_begin
    complete = HttpToolsProtocol.on_headers_complete

    def start_deadline(protocol: Any) -> None:
        if getattr(protocol, "_header_deadline", None) is None:
            protocol._header_deadline = protocol.loop.call_later(
                HttpToolsProtocol._jewelry_header_timeout, protocol.timeout_keep_alive_handler
            )

    def stop_deadline(protocol: Any) -> None:
        deadline = getattr(protocol, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            protocol._header_deadline = None

    def connection_made(self, transport) -> None:
        made(self, transport)
        start_deadline(self)

    def connection_lost(self, exc) -> None:
        stop_deadline(self)
        lost(self, exc)

    def on_message_begin(self) -> None:
        begin(self)
        start_deadline(self)

    def on_headers_complete(self) -> None:
        stop_deadline(self)
        complete(self)

    HttpToolsProtocol._jewelry_header_timeout = float(seconds)
    HttpToolsProtocol.connection_made = connection_made
    HttpToolsProtocol.connection_lost = connection_lost
    HttpToolsProtocol.on_message_begin = on_message_begin
    HttpToolsProtocol.on_headers_complete = on_headers_complete
    logger.debug("Uvicorn header timeout: %.1f s", seconds)
