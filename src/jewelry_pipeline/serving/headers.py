"""Browser-facing guards: security headers on every answer, a `Host` allow-list, model POSTs refused
when a browser sends them from another site, and schemas that show only the public routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from jewelry_pipeline.serving.json_answers import SafeJSONResponse, quoted

# The page loads its script and style from this server only (no inline code), thumbnails from here,
# and the query photo's preview from a blob: URL. No framing, no base-tag tricks, forms post only
# here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"content-security-policy": CONTENT_SECURITY_POLICY.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
}
DEFAULT_CACHE_CONTROL = (
    b"no-store"  # answers that set none (API JSON, errors); the page and thumbnails set their own
)


class SecurityHeaders:
    """ASGI middleware: adds `SECURITY_HEADERS` to every HTTP answer, and `Cache-Control: no-store`
    where unset."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in SECURITY_HEADERS
                ]
                headers += list(SECURITY_HEADERS.items())
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", DEFAULT_CACHE_CONTROL))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(value: str) -> str:
    """The host of a `Host` header or an origin's netloc: lower case, without the port or the
    brackets of an IPv6 address."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@dataclass(frozen=True)
class HostAllowList:
    """Which `Host` names the service answers to (a browser on a rebound DNS name sends its own).

    `names` None: localhost and the address the client connected to (what the server listens on);
    else exactly those names, `*` any. From `JEWELRY_ALLOWED_HOSTS` (comma-separated).
    """

    names: frozenset[str] | None = None

    @classmethod
    def from_setting(cls, value: str | None) -> HostAllowList:
        """`JEWELRY_ALLOWED_HOSTS` read: unset or blank is the default."""
        names = {host_name(name) for name in (value or "").split(",") if name.strip()}
        return cls(frozenset(names) if names else None)

    def allows(self, host: str, local_address: str | None) -> bool:
        """Whether a request for `host` (a Host header) that arrived on `local_address` is
        answered."""
        name = host_name(host)
        if self.names is None:
            local = {host_name(local_address)} if local_address else set()
            return name in LOOPBACK_NAMES | local
        return "*" in self.names or name in self.names


class AllowedHosts:
    """ASGI middleware: a request whose `Host` the allow-list refuses gets a JSON 400 (a request
    without one, not from a browser, passes)."""

    def __init__(self, app, allow_list: HostAllowList):
        self.app = app
        self.allow_list = allow_list

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            local = (scope.get("server") or (None, None))[0]
            if host and not self.allow_list.allows(host, local):
                response = SafeJSONResponse(
                    {
                        "error": f"the host {quoted(host)} is not served here; the server's "
                        "operator can allow it in JEWELRY_ALLOWED_HOSTS",
                        "reason": "host_not_allowed",
                    },
                    status_code=400,
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def is_cross_site(headers: dict[bytes, bytes]) -> bool:
    """A browser request from another site: `Sec-Fetch-Site: cross-site`, or an `Origin` that is not
    an http(s) page of `Host`.

    Requests without these headers (curl, scripts, server-to-server) are not browser requests and
    pass.
    """
    if headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
        return True
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if not origin:
        return False
    if origin == "null":  # sandboxed frames, file: pages
        return True
    parts = urlsplit(origin)
    if parts.scheme.lower() not in ("http", "https"):  # extensions, file: and other schemes
        return True
    return parts.netloc.lower() != headers.get(b"host", b"").decode("latin-1").strip().lower()


class SameSiteOnly:
    """ASGI middleware: POSTs to `paths` that a browser sends from another site get a JSON 403.

    Multipart uploads are "simple" requests that a browser sends cross-site without a preflight, so
    the content type alone cannot tell a user's page from a hostile one; `Origin` and
    `Sec-Fetch-Site` can.
    """

    def __init__(self, app, paths: tuple[str, ...]):
        self.app = app
        self.paths = tuple(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            if is_cross_site(dict(scope.get("headers") or [])):
                response = SafeJSONResponse(
                    {"error": "requests from another site are refused", "reason": "cross_site"},
                    status_code=403,
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class JsonNotFound:
    """ASGI middleware: an unknown path, or a path with a trailing slash (other than `/`),
    is a JSON 404.

    BentoML's router answers an unknown path with plain text, and Starlette's routers answer
    `/catalog/` with a 307 whose Location they build from the request's Host header, so a client
    could make the service redirect to any host it names (found: `Host: evil.example`).
    `is_known(path)` says whether a route serves the path.
    """

    def __init__(self, app, is_known: Callable[[str], bool]):
        self.app = app
        self.is_known = is_known

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if (path != "/" and path.endswith("/")) or not self.is_known(path):
                response = SafeJSONResponse(
                    {"error": "not found", "reason": "not_found"}, status_code=404
                )
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class PublicSchema:
    """ASGI middleware: `/docs.json` is the OpenAPI document of the public routes (`openapi()`).

    BentoML's own version carries its version banner and lists no route of the mounted app."""

    def __init__(self, app, openapi):
        self.app = app
        self.openapi = openapi

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == "/docs.json":
                return await SafeJSONResponse(self.openapi())(scope, receive, send)
        return await self.app(scope, receive, send)


def _names_etag(if_none_match: bytes, etag: bytes) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, `*` matches any)."""
    wanted = [tag.strip().removeprefix(b"W/") for tag in if_none_match.split(b",")]
    return b"*" in wanted or etag.strip().removeprefix(b"W/") in wanted


class HeadAndConditionalGet:
    """ASGI middleware: HEAD is answered on every GET route (the GET's headers, no body), a GET
    whose 200 carries an ETag the request's If-None-Match names is a bodiless 304, and `Range` is
    ignored (the files are small), so no plain-text 416 is ever made."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        bodiless = scope["method"] == "HEAD"
        headers = [(name, value) for name, value in scope.get("headers") or [] if name != b"range"]
        if_none_match = dict(headers).get(b"if-none-match")

        async def send_conditionally(message):
            nonlocal bodiless
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                etag = dict(headers).get(b"etag")
                if message["status"] == 200 and etag and if_none_match:
                    if _names_etag(if_none_match, etag):
                        bodiless = True
                        kept = [(n, v) for n, v in headers if n.lower() != b"content-length"]
                        message = {**message, "status": 304, "headers": kept}
            elif message["type"] == "http.response.body" and bodiless:
                message = {**message, "body": b""}
            await send(message)

        scope = {**scope, "method": "GET", "headers": headers}
        return await self.app(scope, receive, send_conditionally)
