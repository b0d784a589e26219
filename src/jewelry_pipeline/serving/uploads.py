"""Request checks at the HTTP edge: body size cap, JSON errors, upload and field validation.

Pure Starlette/ASGI pieces, so they are tested without starting a server. `CheckedBodies` runs the
checks on a model route's body before BentoML's own parser sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pydantic_core
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from jewelry_pipeline.core.images import ImageRejected
from jewelry_pipeline.serving.json_answers import SafeJSONResponse, error_answer, quoted
from jewelry_pipeline.serving.limits import replaying

# How each decoder refusal is answered: too big is 413, not an image we take is 415, broken is 400.
STATUS_BY_REASON = {"too_large": 413, "unsupported_format": 415, "not_an_image": 415}
MAX_JSON_BYTES = 64 * 1024  # JSON routes take small objects only
PLAIN_INTEGER = re.compile(r"-?[0-9]{1,12}\Z")  # ASCII digits: not "1_0", "\u0665" or " 5 "
MULTIPART_OVERHEAD = 64 * 1024  # room for boundaries and the small text fields next to the image
# BentoML stores an uploaded file under its own name: longer names could not be stored.
MAX_FILENAME_BYTES = 200
PICKLE_TYPES = (
    "application/vnd.bentoml+pickle",
    "application/python-pickle",
    "application/x-pickle",
    "application/pickle",
)


class ApiError(Exception):
    """A request the service refuses, with its HTTP status and a message for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str = "bad_request",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers

    def response(self) -> SafeJSONResponse:
        """The JSON body every refusal gets."""
        return error_answer(self.status, self.message, self.reason, self.headers)


def rejected_upload(exc: ImageRejected) -> ApiError:
    """Map a decoder refusal to its HTTP answer."""
    return ApiError(STATUS_BY_REASON.get(exc.reason, 400), f"image refused: {exc}", exc.reason)


def _refuse_pickle(content_type: str) -> None:
    """A pickle never crosses this boundary, whatever the route."""
    if content_type.lower() in PICKLE_TYPES:
        raise ApiError(415, "pickled payloads are never accepted", "unsupported_media_type")


def _media_type(request: Request) -> str:
    """The request's Content-Type without parameters, after refusing pickles."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    _refuse_pickle(content_type)
    return content_type


async def read_form(request: Request, max_bytes: int) -> FormData:
    """Parse a multipart form with one file at most; anything else is refused with a 4xx."""
    content_type = _media_type(request)
    if content_type != "multipart/form-data":
        raise ApiError(
            415,
            "send multipart/form-data with a file field 'image' "
            f"(got {quoted(content_type) if content_type else 'no content type'})",
            "unsupported_media_type",
        )
    try:
        return await request.form(max_files=1, max_fields=8, max_part_size=max_bytes)
    except Exception as exc:  # noqa: BLE001 - every parser failure is the client's malformed form
        raise ApiError(
            400, f"malformed multipart form: {quoted(exc, 200)}", "malformed_form"
        ) from None


async def image_field(form: FormData, name: str = "image") -> bytes:
    """The bytes of the uploaded file in `name`; text (such as a URL) is refused, never fetched."""
    values = form.getlist(name)
    if not values:
        raise ApiError(400, f"missing field '{name}': upload the photo as a file", "missing_field")
    if len(values) > 1:
        raise ApiError(400, f"field '{name}' must hold exactly one file", "wrong_field_type")
    value = values[0]
    if not isinstance(value, UploadFile):
        raise ApiError(
            400,
            f"field '{name}' must be an uploaded file; URLs and text are never fetched",
            "wrong_field_type",
        )
    _refuse_pickle(value.content_type or "")
    _check_filename(value.filename or "")
    return await value.read()


def _check_filename(filename: str) -> None:
    """A file name the server can store the upload under (BentoML keeps it as the suffix)."""
    if "\x00" in filename or len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise ApiError(
            400,
            f"the file name {quoted(filename)} is over {MAX_FILENAME_BYTES} bytes or holds a NUL: "
            "rename the file",
            "bad_filename",
        )


def one_value(fields: Any, name: str) -> Any:
    """The one value of `name` in a form or query (None when absent); a repeated field is a 400,
    never silently one of them."""
    values = fields.getlist(name)
    if len(values) > 1:
        raise ApiError(
            400, f"field '{name}' given {len(values)} times: give it once", "repeated_field"
        )
    return values[0] if values else None


def int_field(raw: Any, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter in [low, high] (plain ASCII digits, or a JSON integer), or a 400 naming
    the field."""
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ApiError(400, f"field '{name}' must be an integer", "wrong_field_type")
    if isinstance(raw, str) and not PLAIN_INTEGER.match(raw):
        raise ApiError(
            400,
            f"field '{name}' must be an integer in plain digits, got {quoted(raw)}",
            "wrong_field_type",
        )
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(
            400, f"field '{name}' must be between {low} and {high}, got {value}", "out_of_range"
        )
    return value


def text_field(raw: Any, name: str) -> str | None:
    """An optional short text parameter (a number is its text: a folder may be named `2024`)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ApiError(400, f"field '{name}' must be text", "wrong_field_type")
    return str(raw)[:200]


def form_value(raw: Any) -> Any:
    """A text form field as BentoML reads it: its JSON value when it parses (BentoML's client
    JSON-encodes every field but the file), else the text itself."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: a repeated key is refused, not last-one-wins."""
    data = dict(pairs)
    if len(data) != len(pairs):
        repeated = next(key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1)
        raise ApiError(
            400, f"field {quoted(repeated)} given more than once: give it once", "repeated_field"
        )
    return data


async def json_object(request: Request, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A small JSON object body, refused with 413 as soon as it is over `max_bytes` (declared or
    read so far), never read whole first."""
    _media_type(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, f"body over {max_bytes} bytes", "too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, f"body over {max_bytes} bytes", "too_large")
    try:
        data = json.loads(bytes(body) or b"null", object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "body must be a JSON object", "malformed_json") from None
    except RecursionError:  # found by tests/serving/test_fuzz.py: ~1,000 nested brackets gave a 500
        raise ApiError(
            400, "body must be a JSON object, not nested this deeply", "malformed_json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", "malformed_json")
    return data


class BodySizeLimit:
    """ASGI middleware: refuse bodies over a cap with 413 before anything parses them.

    The declared Content-Length is checked first; a body streamed without one is counted as it
    arrives and cut off at the cap. `limit` is a callable so the cap can follow the loaded bundle.
    """

    def __init__(self, app, limit):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        cap = int(self.limit())
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > cap
            except ValueError:
                return await ApiError(400, "invalid Content-Length", "bad_request").response()(
                    scope, receive, send
                )
            if too_big:
                return await _too_large(cap)(scope, receive, send)
        received = 0
        overflowed = False
        started = False

        async def counted_receive():
            nonlocal received, overflowed
            if overflowed:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    overflowed = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if overflowed:
                return  # the app saw a disconnect; its answer is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not overflowed:
                raise
        if overflowed and not started:
            await _too_large(cap)(scope, receive, send)


def _too_large(cap: int) -> SafeJSONResponse:
    return ApiError(413, f"request body over the {cap}-byte cap", "too_large").response()


BodyCheck = Callable[[Request], Awaitable[None]]


class CheckedBodies:
    """ASGI middleware: a request to one of `checks`' paths is checked by its check (which raises
    `ApiError`) before the route's own parser sees it; a wrong method is a JSON 405.

    BentoML's parser is lenient where these checks are strict (it takes `k= 5 ` and `1_0`, keeps
    the last of a repeated field, and fetches a URL given as the file), so only checked bodies reach
    it, replayed unchanged.
    """

    def __init__(self, app, checks: Mapping[str, BodyCheck]):
        self.app = app
        self.checks = dict(checks)

    async def __call__(self, scope, receive, send):
        check = self.checks.get(scope["path"]) if scope["type"] == "http" else None
        if check is None:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            answer = error_answer(
                405, "method not allowed: use POST", "method_not_allowed", {"Allow": "POST"}
            )
            return await answer(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        request = Request(scope, replaying(body, receive))
        try:
            await check(request)
        except ApiError as exc:
            return await exc.response()(scope, receive, send)
        finally:
            await request.close()  # the parsed form's spooled files
        return await self.app(scope, replaying(body, receive), send)


async def check_photo_form(
    request: Request, max_bytes: int, fields: Mapping[str, Callable[[Any], object]]
) -> None:
    """Refuse, with a 4xx, a photo form that is not multipart with one uploaded file in `image`,
    and each of `fields` given at most once with a value its check takes."""
    form = await read_form(request, max_bytes)
    await image_field(form)
    for name, check in fields.items():
        check(one_value(form, name))


async def check_item_query(request: Request, k_range: tuple[int, int, int]) -> None:
    """Refuse, with a 4xx, a `recommend_by_id` body that is not a small JSON object with a
    non-empty `item_id` and an optional `k` in range (default, low, high)."""
    raw = await request.body()  # read whole by `CheckedBodies` already
    body = await json_object(request)
    try:  # BentoML reads the body with pydantic's parser, which also refuses lone surrogates
        pydantic_core.from_json(raw)
    except ValueError:
        raise ApiError(
            400, "body must be a JSON object of valid Unicode text", "malformed_json"
        ) from None
    item_id_field(body.get("item_id"))
    int_field(body.get("k"), "k", *k_range)


def item_id_field(raw: Any) -> str:
    """A catalog item id: a non-empty string (or a JSON integer, as its text)."""
    if not isinstance(raw, (str, int)) or isinstance(raw, bool) or str(raw) == "":
        raise ApiError(
            400,
            "field 'item_id' must be a non-empty string",
            "missing_field" if raw is None else "wrong_field_type",
        )
    return str(raw)
