"""The BentoML service: a thin HTTP layer over `RecommendationEngine`, with the web page at `/`.

Start it with `make serve` (or `bentoml serve jewelry_pipeline.serving.service:JewelryService`).
It serves the bundle named by `JEWELRY_BUNDLE`: a bundle folder, or a BentoML model tag
(default: the latest champion, `jewelry-bundle:latest`).
"""

from __future__ import annotations

import os

# Telemetry is already off (the package's __init__); pickles are refused by MLflow in this process.
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = (
    "false"  # never overridable in the serving process
)

import asyncio  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import logging  # noqa: E402
from collections.abc import Awaitable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import anyio  # noqa: E402
import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import FileResponse, Response  # noqa: E402
from pydantic import Field  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from jewelry_pipeline.core.bundle import verify_bundle  # noqa: E402
from jewelry_pipeline.core.images import DecodeLimits, ImageRejected  # noqa: E402
from jewelry_pipeline.core.query import QueryBatch  # noqa: E402
from jewelry_pipeline.core.substyles import PREVIEW_K, EditRefused  # noqa: E402
from jewelry_pipeline.core.thumbnails import THUMBNAIL_ROUTE  # noqa: E402
from jewelry_pipeline.serving.admin import AdminTokenError, AdminTokens  # noqa: E402
from jewelry_pipeline.serving.bentoml_compat import (  # noqa: E402
    UNMATCHED,
    CorkDispatcher,
    RestoreRequestPath,
    cancel_request_timers,
    install_header_timeout,
    label_metrics_by_route,
    leaf_routes,
    route_template,
)
from jewelry_pipeline.serving.edit_record import EditRecorder  # noqa: E402
from jewelry_pipeline.serving.edits import (  # noqa: E402
    FolderVersions,
    StaleVersion,
    StoreVersions,
    SubstyleEditor,
    TooManyEdits,
)
from jewelry_pipeline.serving.engine import RecommendationEngine, UnknownCategory, UnknownItem  # noqa: E402
from jewelry_pipeline.serving.headers import (
    AllowedHosts,
    HeadAndConditionalGet,
    HostAllowList,
    JsonNotFound,
    PublicSchema,
    SameSiteOnly,
    SecurityHeaders,
)  # noqa: E402
from jewelry_pipeline.serving.json_answers import SafeJSONResponse, error_answer  # noqa: E402
from jewelry_pipeline.serving.limits import BodyFirst, ConcurrencyLimit, LoadFailure  # noqa: E402
from jewelry_pipeline.serving.loader import (  # noqa: E402
    BundleHolder,
    bundle_location,
    bundle_reference,
    latest_in_store,
    lower_thread_priority,
)
from jewelry_pipeline.serving.uploads import (  # noqa: E402
    MULTIPART_OVERHEAD,
    ApiError,
    BodySizeLimit,
    CheckedBodies,
    check_item_query,
    check_photo_form,
    form_value,
    int_field,
    item_id_field,
    json_object,
    one_value,
    rejected_upload,
    text_field,
)

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_K = 50
DEFAULT_K = 10
K_RANGE = (DEFAULT_K, 1, MAX_K)  # `k`: default, lowest, highest
SimilarCount = Annotated[int, Field(ge=K_RANGE[1], le=K_RANGE[2])]  # `k` as the APIs declare it
MAX_CONCURRENCY = int(os.environ.get("JEWELRY_MAX_CONCURRENCY", "32"))  # more in flight get 429
LOAD_WAIT_SECONDS = float(
    os.environ.get("JEWELRY_LOAD_WAIT_SECONDS", "15")
)  # requests wait this long for a loading bundle
LIMITED_PATHS = ("/classify", "/recommend", "/recommend_by_id")  # the model APIs
# Bounded in number at once (429 over MAX_CONCURRENCY): the model APIs, and a sub-style preview,
# which runs KMeans.
COMPUTE_PATHS = (*LIMITED_PATHS, "/substyles")
# A model route's body is read whole before it takes a slot, at this rate on average after the
# grace: slower uploads get 408 and hold no model slot.
BODY_GRACE_SECONDS = float(os.environ.get("JEWELRY_BODY_GRACE_SECONDS", "5"))
BODY_MIN_BYTES_PER_SECOND = float(os.environ.get("JEWELRY_BODY_MIN_BYTES_PER_SECOND", "65536"))
# A connection sends its request line and headers within this many seconds, or is closed.
HEADER_TIMEOUT_SECONDS = float(os.environ.get("JEWELRY_HEADER_TIMEOUT_SECONDS", "10"))
# The Host names answered (comma-separated, `*` any); unset: localhost and the address connected to.
ALLOWED_HOSTS = HostAllowList.from_setting(os.environ.get("JEWELRY_ALLOWED_HOSTS"))
MAX_BATCH_SIZE = 32  # photos per batched model call
MAX_BATCH_LATENCY_MS = (
    20_000  # the batcher's own bound on a photo's wait (requests time out at 30 s)
)
CPU_THREADS = int(os.environ.get("JEWELRY_CPU_THREADS", "2"))  # decode and search threads
# Worker processes, each with its own copy of the bundle: a killed worker fails only its own
# requests in flight while the others keep answering (the supervisor restarts it).
WORKERS = int(os.environ.get("JEWELRY_WORKERS", "2"))
# How often each worker looks for a new bundle version (the store's latest, or the bundle path's
# link moved by a new write); 0 turns live reload off.
RELOAD_SECONDS = float(os.environ.get("JEWELRY_RELOAD_SECONDS", "5"))


def served_bundles() -> BundleHolder | None:
    """This worker's `BundleHolder`, held by the service instance (None before BentoML makes it):
    how the edge guards, which BentoML builds apart from the instance, read the bundle."""
    try:
        return bentoml.get_current_service().bundles
    except bentoml.exceptions.BentoMLException:
        return None


def upload_cap() -> int:
    """Bytes a request body may hold: the bundle's decode cap plus room for the form."""
    if override := os.environ.get("JEWELRY_MAX_REQUEST_BYTES"):
        return int(override)
    bundles = served_bundles()
    engine = bundles.engine if bundles else None
    return (engine.limits if engine else DecodeLimits()).max_bytes + MULTIPART_OVERHEAD


def load_failure() -> str | None:
    """Why this worker's bundle failed to load (its public cause), or None."""
    bundles = served_bundles()
    return bundles.load_error if bundles else None


cancel_request_timers()  # before BentoML builds its middleware stack in the worker
install_header_timeout(HEADER_TIMEOUT_SECONDS)  # before the worker's Uvicorn takes connections
web = FastAPI(title="jewelry-pipeline", docs_url=None, redoc_url=None, openapi_url=None)
BENTOML_PATHS = (
    "/metrics",
    "/livez",
    "/readyz",
    "/healthz",
    "/docs.json",
    "/schema.json",
)  # BentoML's own routes


@functools.cache
def _served_routes() -> list:
    """The app's routes, flattened once (at the first request, when every route is registered)."""
    return leaf_routes(web.routes)


def _template(path: str) -> str:
    """The route template serving `path` (`UNMATCHED` when none does): the metrics label."""
    return route_template(path, _served_routes(), BENTOML_PATHS + LIMITED_PATHS)


label_metrics_by_route(_template)


@web.exception_handler(ApiError)
async def _api_error(_: Request, exc: ApiError) -> SafeJSONResponse:
    return exc.response()


@web.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> SafeJSONResponse:
    """Unknown paths and wrong methods answer JSON like every other error, not Starlette's plain
    text."""
    reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_answer(exc.status_code, str(exc.detail).lower(), reason, exc.headers)


@web.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> SafeJSONResponse:
    """A bug is still a clean answer: JSON with a reason (the security headers are added outside),
    the details in the log only."""
    logger.error("Unexpected %s on %s: %s", type(exc).__name__, request.url.path, exc, exc_info=exc)
    return _internal_error_answer()


def show_service_log() -> None:
    """Let the project's INFO lines (bundle verified, loaded and swapped; sub-style edits) into
    the server's log: BentoML's server logging passes only its own at INFO (root at WARNING)."""
    package = logging.getLogger("jewelry_pipeline")
    package.disabled = False  # BentoML's dictConfig disables loggers made before it ran
    package.setLevel(logging.INFO)
    for name, child in logging.root.manager.loggerDict.items():
        if name.startswith("jewelry_pipeline.") and isinstance(child, logging.Logger):
            child.disabled = False


def _internal_error_answer() -> SafeJSONResponse:
    """A bug's answer: the details are in the log only."""
    return error_answer(500, "internal error: the server's log has the details", "internal_error")


@bentoml.service(name="jewelry", workers=WORKERS, traffic={"timeout": 30})
@bentoml.asgi_app(web, path="/")
class JewelryService:
    """Classify a photo and recommend visually similar catalog items."""

    @bentoml.on_deployment
    def check_bundle() -> None:
        """Before any worker starts: a missing, corrupt or truncated bundle stops `bentoml serve`
        here."""
        show_service_log()
        path, label = bundle_location(bundle_reference())
        verify_bundle(path)
        logger.info("Serving bundle %s verified", label)

    def __init__(self) -> None:
        show_service_log()
        # Here, not at module level: the start-up check in the parent stays light.
        import tensorflow as tf

        # One TensorFlow compute thread: the other core stays free for the event loop, decoding and
        # probes, so /readyz and /livez answer fast under saturation (batching keeps throughput).
        tf_threads = int(os.environ.get("JEWELRY_TF_THREADS", "1"))
        tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(tf_threads)
        # This worker's bundle: verified by check_bundle, and again as it loads.
        self.bundles = BundleHolder(RELOAD_SECONDS)
        self.bundles.start()
        self.admin, self.editor = _sub_style_editing()

    async def __is_ready__(self) -> bool:
        """Ready once the bundle is loaded (async: the probe never waits for a worker thread)."""
        return self.bundles.engine is not None

    async def _ready_engine(self) -> RecommendationEngine:
        """The loaded engine, waiting up to `LOAD_WAIT_SECONDS` while it loads (else 503)."""
        return await self.bundles.ready_engine(LOAD_WAIT_SECONDS)

    def _embed_batch(
        self, items: list[tuple[RecommendationEngine, np.ndarray]]
    ) -> list[QueryBatch]:
        """The batched model call (in a worker thread): prepared photos -> one query per photo,
        each by the engine its request took (across a reload, a batch may hold two)."""
        lower_thread_priority()
        queries: list[QueryBatch | None] = [None] * len(items)
        for engine in {id(engine): engine for engine, _ in items}.values():
            members = [i for i, (owner, _) in enumerate(items) if owner is engine]
            photos = engine.features(np.stack([items[i][1] for i in members])).photos()
            for i, query in zip(members, photos):
                queries[i] = query
        return queries

    @functools.cached_property
    def _batcher(self):
        """BentoML's adaptive batcher (the one behind batchable APIs), called in-process with
        arrays.

        Made on first use, inside the worker's event loop; one batch runs at a time.
        """

        def overloaded() -> QueryBatch:
            """The batcher's answer to a photo it gave up on.

            The request's own cancellation (its timeout, a client gone) stays a cancellation; a
            photo dropped for the latency budget is a 503.
            """
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            raise ApiError(503, "the model call was cancelled; try again", "model_error")

        dispatcher = CorkDispatcher(
            MAX_BATCH_LATENCY_MS, MAX_BATCH_SIZE, fallback=overloaded, get_batch_size=lambda _: 1
        )
        return dispatcher(self._embed_batch)

    async def _features(self, engine: RecommendationEngine, data: bytes) -> QueryBatch:
        """Decode in a worker thread, then join the next adaptive batch of model calls."""
        try:
            image = await anyio.to_thread.run_sync(engine.prepare, data, limiter=_cpu_limiter())
        except ImageRejected as exc:
            raise rejected_upload(exc) from None
        try:
            return await self._batcher((engine, image))
        except ApiError:
            raise
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets a JSON 500 naming the log
            logger.exception("The batched model call failed")
            raise ApiError(
                500, "the model call failed; see the server log", "model_error"
            ) from None

    @web.get("/")
    async def index(self) -> FileResponse:
        """The web page: upload a photo, see its category and similar items, browse the catalog."""
        return FileResponse(
            STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    @web.get("/app.js")
    async def page_script(self) -> FileResponse:
        """The page's script (a file of its own: the Content-Security-Policy allows no inline
        script)."""
        return FileResponse(
            STATIC / "app.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"}
        )

    @web.get("/app.css")
    async def page_style(self) -> FileResponse:
        """The page's style sheet."""
        return FileResponse(
            STATIC / "app.css", media_type="text/css", headers={"Cache-Control": "no-cache"}
        )

    @web.get("/status")
    async def status(self) -> SafeJSONResponse:
        """`loading`, `ready` or `failed` (with the cause): what the page shows instead of
        guessing."""
        bundles, engine = self.bundles, self.bundles.engine
        return SafeJSONResponse(
            {
                "state": bundles.state,
                "error": bundles.load_error,
                "model_version": engine.version if engine else None,
                "reload_error": bundles.reload_error,
            }
        )

    @bentoml.api(route="/classify")
    async def classify(self, image: Path) -> dict[str, Any]:
        """Multipart `image` -> category, probabilities and model version."""
        return await _answered(self._classify(image))

    @bentoml.api(route="/recommend")
    async def recommend(
        self,
        image: Path,
        k: SimilarCount = DEFAULT_K,
        category: str | int | None = None,
    ) -> dict[str, Any]:
        """Multipart `image`, `k` (1-50) and optional `category` -> category, cluster and similar
        items."""
        return await _answered(self._recommend(image, k, category))

    @bentoml.api(route="/recommend_by_id")
    async def recommend_by_id(
        self, item_id: str | int, k: SimilarCount = DEFAULT_K
    ) -> dict[str, Any]:
        """JSON `{"item_id": ..., "k": 10}` -> the item and its most similar catalog items."""
        return await _answered(self._recommend_by_id(item_id, k))

    async def _classify(self, image: Path) -> dict[str, Any]:
        engine = await self._ready_engine()
        return engine.classify(await self._features(engine, image.read_bytes()))

    async def _recommend(self, image: Path, k: int, category: str | int | None) -> dict[str, Any]:
        engine = await self._ready_engine()
        category = _check(engine.check_category, text_field(category, "category"))
        features = await self._features(engine, image.read_bytes())
        return await _in_thread(engine.recommend, features, k, category)

    async def _recommend_by_id(self, item_id: str | int, k: int) -> dict[str, Any]:
        engine = await self._ready_engine()
        return await _in_thread(engine.recommend_by_id, item_id_field(item_id), k)

    @web.get(THUMBNAIL_ROUTE)
    async def thumbnail(self, item_id: str) -> Response:
        """The catalog item's thumbnail (JPEG)."""
        engine = await self._ready_engine()
        jpeg = _check(engine.thumbnail_jpeg, item_id)  # a slice: no thread
        # One bundle's thumbnail never changes: its digest and the item name it.
        item_digest = hashlib.sha256(item_id.encode()).hexdigest()[:16]
        etag = f'"{engine.version["bundle_digest"]}-{item_digest}"'
        return Response(
            jpeg,
            media_type="image/jpeg",
            headers={"Cache-Control": "public, max-age=3600", "ETag": etag},
        )

    @web.get("/substyles")
    async def substyles(self, request: Request) -> SafeJSONResponse:
        """A category's sub-styles (query `category`): each one's name, size, typical items and
        edge cases; with `k` (2-12), a preview of k new ones, computed and not saved."""
        engine = await self._ready_engine()
        query = request.query_params
        category = text_field(one_value(query, "category"), "category")
        k = one_value(query, "k")
        k = None if k in (None, "") else int_field(k, "k", 0, *PREVIEW_K)
        view = await _in_thread(engine.substyles, category, k)
        view["editing"] = self.editor is not None and self.admin.enabled
        return SafeJSONResponse(view)

    @web.post("/substyles/edits")
    async def edit_substyles(self, request: Request) -> SafeJSONResponse:
        """JSON `{"edits": [...]}` (rename, merge, split, move, set_k) applied as one new bundle
        version; needs `Authorization: Bearer <admin token>` and `If-Match: <bundle_digest>`."""
        editor, by = self._editor(request)
        expected = _if_match(request)
        edits = (await json_object(request)).get("edits")
        return SafeJSONResponse(await _edit_in_thread(editor.apply, edits, expected, by))

    @web.post("/substyles/undo")
    async def undo_substyles(self, request: Request) -> SafeJSONResponse:
        """Serve the version before the last edit again; the same headers as an edit."""
        editor, by = self._editor(request)
        return SafeJSONResponse(await _edit_in_thread(editor.undo, _if_match(request), by))

    def _editor(self, request: Request) -> tuple[SubstyleEditor, str]:
        """The editor and the name of the admin token sent, or the refusal (403, 429, 401)."""
        if self.editor is None or not self.admin.enabled:
            raise ApiError(
                403,
                "sub-style editing is off: it needs admin tokens "
                "(`jewelry-pipeline admin-token NAME`) and a bundle that moves: the store's latest "
                "or a bundle folder (JEWELRY_BUNDLE)",
                "editing_off",
            )
        try:
            self.editor.count_request()
        except TooManyEdits as exc:
            raise ApiError(429, str(exc), "too_many_edits") from None
        by = self.admin.identify(request.headers.get("authorization"))
        if by is None:
            raise ApiError(
                401,
                "an admin token is needed: Authorization: Bearer <token>",
                "unauthorized",
                {"WWW-Authenticate": "Bearer"},
            )
        return self.editor, by

    @web.get("/catalog")
    async def catalog(self) -> SafeJSONResponse:
        """Categories, item counts and clusters."""
        return SafeJSONResponse((await self._ready_engine()).catalog_summary())

    @web.get("/catalog/items")
    async def catalog_items(self, request: Request) -> SafeJSONResponse:
        """A page of items: query `category`, `cluster`, `offset`, `limit` (at most 200)."""
        engine = await self._ready_engine()
        query = request.query_params
        cluster = one_value(query, "cluster")
        page = await _in_thread(
            engine.catalog_items,
            text_field(one_value(query, "category"), "category"),
            None if cluster in (None, "") else int_field(cluster, "cluster", 0, -1, 10_000),
            int_field(one_value(query, "offset"), "offset", 0, 0, 10**9),
            int_field(one_value(query, "limit"), "limit", 48, 1, 200),
        )
        return SafeJSONResponse(page)


async def _answered(answer: Awaitable[dict[str, Any]]) -> SafeJSONResponse:
    """A model route's answer as JSON: a refusal is its JSON 4xx, a bug a JSON 500 naming the log
    (BentoML would answer its own shapes)."""
    try:
        return SafeJSONResponse(await answer)
    except ApiError as exc:
        return exc.response()
    except Exception as exc:  # noqa: BLE001 - logged with its traceback; the client gets JSON
        logger.error("Unexpected %s in a model route: %s", type(exc).__name__, exc, exc_info=exc)
        return _internal_error_answer()


def _check(function, *args):
    """Call an engine method, turning an unknown item into a 404, and an unknown category or a
    sub-style k the category cannot have into a 400."""
    try:
        return function(*args)
    except UnknownItem as exc:
        raise ApiError(404, str(exc), "not_found") from None
    except UnknownCategory as exc:
        raise ApiError(400, str(exc), "not_found") from None
    except EditRefused as exc:
        raise ApiError(400, str(exc), "out_of_range") from None


def _sub_style_editing() -> tuple[AdminTokens, SubstyleEditor | None]:
    """The admin tokens, and an editor when the service serves a bundle's moving version (a
    versioned folder, or the store's latest); unreadable tokens leave editing off, and say why."""
    try:
        admin = AdminTokens.from_environment()
    except AdminTokenError as exc:
        logger.error("Sub-style editing is off: %s", exc)
        admin = AdminTokens({})
    reference = bundle_reference()
    path, _ = bundle_location(reference)
    if path.is_symlink():
        versions = FolderVersions(path)
    elif name := latest_in_store(reference):
        versions = StoreVersions(name)
    else:  # a plain folder or a pinned store version: nothing an edit could move
        return admin, None
    recorder = EditRecorder.from_environment() if admin.enabled else None
    return admin, SubstyleEditor(versions, recorder=recorder)


def _if_match(request: Request) -> str:
    """The bundle digest an edit was made against (`If-Match`, quoted or not), or 428."""
    value = request.headers.get("if-match", "").strip().strip('"')
    if not value:
        raise ApiError(
            428,
            "If-Match is needed: the bundle_digest the sub-styles were read from (/status)",
            "if_match_required",
        )
    return value


async def _edit_in_thread(function, *args):
    """An edit or undo in a worker thread: a refused edit is a 400, a stale version a 409."""
    try:
        return await anyio.to_thread.run_sync(function, *args, limiter=_cpu_limiter())
    except EditRefused as exc:
        raise ApiError(400, str(exc), "edit_refused") from None
    except StaleVersion as exc:
        raise ApiError(409, str(exc), "stale_version") from None


async def _in_thread(function, *args):
    """`_check` in a worker thread, so index search never blocks the event loop."""
    return await anyio.to_thread.run_sync(_check, function, *args, limiter=_cpu_limiter())


@functools.cache
def _cpu_limiter() -> anyio.CapacityLimiter:
    """At most CPU_THREADS threads decode and search at once: more only contend for the GIL and
    delay the event loop (and with it the health probes) without adding throughput on 2 cores.
    Made on first use, inside the event loop, as anyio requires."""
    return anyio.CapacityLimiter(CPU_THREADS)


@functools.cache
def public_openapi() -> dict[str, Any]:
    """The OpenAPI document of every route (the model APIs and the page's), without BentoML's
    version banner."""
    spec = JewelryService.openapi_spec.asdict()
    description = JewelryService.inner.__doc__
    spec["info"] = {"title": "jewelry-pipeline", "version": "1", "description": description}
    return spec


def _k(raw) -> int:
    """The number of similar items asked for."""
    return int_field(raw, "k", *K_RANGE)


# Each model route's body checks, run before BentoML parses it (see `CheckedBodies`).
BODY_CHECKS = {
    "/classify": lambda request: check_photo_form(request, upload_cap(), {}),
    "/recommend": lambda request: check_photo_form(
        request,
        upload_cap(),
        {"k": _k, "category": lambda raw: text_field(form_value(raw), "category")},
    ),
    "/recommend_by_id": lambda request: check_item_query(request, K_RANGE),
}

# First: everything after it sees the client's path. Then the security headers, so every answer
# carries them, the edge guards' own answers (404, 413, 429, 403, 503) included.
JewelryService.add_asgi_middleware(RestoreRequestPath)
JewelryService.add_asgi_middleware(SecurityHeaders)
JewelryService.add_asgi_middleware(HeadAndConditionalGet)
JewelryService.add_asgi_middleware(AllowedHosts, allow_list=ALLOWED_HOSTS)
JewelryService.add_asgi_middleware(JsonNotFound, is_known=lambda path: _template(path) != UNMATCHED)
JewelryService.add_asgi_middleware(BodySizeLimit, limit=upload_cap)
JewelryService.add_asgi_middleware(
    BodyFirst,
    paths=LIMITED_PATHS,
    grace_s=BODY_GRACE_SECONDS,
    min_bytes_per_s=BODY_MIN_BYTES_PER_SECOND,
)
JewelryService.add_asgi_middleware(CheckedBodies, checks=BODY_CHECKS)
JewelryService.add_asgi_middleware(
    ConcurrencyLimit, max_concurrency=MAX_CONCURRENCY, paths=COMPUTE_PATHS
)
JewelryService.add_asgi_middleware(LoadFailure, failure=load_failure)
JewelryService.add_asgi_middleware(SameSiteOnly, paths=LIMITED_PATHS)
JewelryService.add_asgi_middleware(PublicSchema, openapi=public_openapi)
