"""`deepmlf serve`'s web app: thin FastAPI routes over one warm `Predictor` (deepmlf_cli.predictor).

    GET  /              the page (deepmlf_cli/web/index.html: one static file, nothing from another host)
    POST /api/predict   multipart: `files` (one or more clips), optional `text` (one file only), `segment`, `window`
                        -> the list of `deepmlf predict --json` result dicts (422 when every file failed)
    GET  /api/model     the run's card: name, kind, LM, dataset, scale, feature recipe, test metrics
    GET  /api/health    {"status": "ok", "busy": bool, "waiting": n}
    GET  /openapi.json  the schema (the interactive docs are left out: they load scripts from a CDN)

Inference runs one request at a time in one worker thread (CPU threads are the
limit); at most `queue` more requests wait, the next gets 503 with Retry-After.
Each uploaded file streams into a private temporary folder under a size cap
(413 past it) and is deleted when its request ends, whatever way it ends. An
uploaded file's name is only ever shown, never used as a path (the temporary
file gets a made-up name), and no request field is ever opened as a path.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from deepmlf_cli.predictor import DEFAULT_WINDOW_S, Predictor

RETRY_AFTER_S = 5  # what a 503 tells the client to wait: about one clip's inference
MAX_FILES = 32  # per request
MAX_FIELD_BYTES = 64 * 1024  # a text/segment/window field
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")  # a temporary file keeps its upload's extension only when plain
PREDICT_BODY = {  # /api/predict reads its body itself (streamed, capped): its schema is declared here
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "text": {"type": "string", "description": "the transcript (only when one file is sent)"},
                        "segment": {"type": "boolean", "description": "predict each utterance or window (a timeline)"},
                        "window": {
                            "type": "number",
                            "description": "window seconds for segment mode without timestamps",
                        },
                    },
                }
            }
        },
    },
}


class HTTPError(Exception):
    """A request refused with `status` and a one-line `detail`."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


@dataclass
class Upload:
    """One uploaded file: the name the client gave (shown, never opened) and where its bytes are."""

    name: str
    path: Path


@dataclass
class ParsedForm:
    uploads: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


async def read_form(request: Request, folder: Path, max_bytes: int) -> ParsedForm:
    """Stream a multipart body into files under `folder` (made-up names), at most `max_bytes` of uploads.

    Raises HTTPError 413 past the cap, 400 on a malformed body; the caller deletes `folder`.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPError(400, "send the clips as multipart/form-data in the field `files`")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + MAX_FIELD_BYTES:
        raise HTTPError(
            413,
            f"the upload is {int(declared) / 2**20:.1f} MiB; the server takes at most "
            f"{max_bytes / 2**20:.0f} MiB (--max-upload-mb)",
        )
    form = ParsedForm()
    state: dict[str, Any] = {"headers": [], "name": b"", "value": b"", "part": None}
    total = 0

    def on_part_begin() -> None:
        state.update(headers=[], part=None, data=bytearray(), file=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"].append((state["name"].lower(), state["value"]))
        state.update(name=b"", value=b"")

    def on_headers_finished() -> None:
        disposition = dict(state["headers"]).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        state["field"] = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if len(form.uploads) >= MAX_FILES:
                raise HTTPError(413, f"at most {MAX_FILES} files per request")
            name = options[b"filename"].decode("utf-8", "replace")
            suffix = Path(name).suffix if _SAFE_SUFFIX.fullmatch(Path(name).suffix) else ""
            path = folder / f"upload-{len(form.uploads)}{suffix}"  # made up: the client's name is never a path
            state["file"] = path.open("wb")
            form.uploads.append(Upload(name or f"file {len(form.uploads) + 1}", path))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal total
        chunk = data[start:end]
        if state["file"] is not None:
            total += len(chunk)
            if total > max_bytes:
                raise HTTPError(413, f"the upload exceeds {max_bytes / 2**20:.0f} MiB (--max-upload-mb)")
            state["file"].write(chunk)
        else:
            state["data"] += chunk
            if len(state["data"]) > MAX_FIELD_BYTES:
                raise HTTPError(413, f"the field {state['field']!r} exceeds {MAX_FIELD_BYTES // 1024} KiB")

    def on_part_end() -> None:
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
        else:
            form.fields[state["field"]] = state["data"].decode("utf-8", "replace")

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)  # small blocking writes to a local file, chunk by chunk
        parser.finalize()
    except HTTPError:
        raise
    except Exception as exc:
        if type(exc).__name__ == "ClientDisconnect":
            raise
        raise HTTPError(400, f"malformed multipart body ({exc})") from None
    finally:
        if state.get("file") is not None:
            state["file"].close()
    return form


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Service:
    """The warm predictor, its one worker thread and the bounded wait list (the app's state)."""

    def __init__(
        self, predictor: Predictor, *, queue: int, max_upload_bytes: int, allow_missing: bool, tmp_root: Path
    ) -> None:
        self.predictor = predictor
        self.queue = queue
        self.max_upload_bytes = max_upload_bytes
        self.allow_missing = allow_missing
        self.tmp_root = tmp_root
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepmlf-predict")
        self.lock = asyncio.Lock()
        self.admitted = 0  # requests in flight + waiting

    def admit(self) -> None:
        """Take a place, or 503 when `queue` requests already wait behind the one in flight."""
        if self.admitted > self.queue:
            raise HTTPError(
                503,
                f"busy: {self.queue} requests are waiting; retry in {RETRY_AFTER_S} s",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        self.admitted += 1

    def predict_all(self, form: ParsedForm) -> list[dict[str, Any]]:
        """Every upload's result dict, in order (runs in the worker thread)."""
        text = form.fields.get("text")
        options: dict[str, Any] = {"segment": _flag(form.fields.get("segment")), "allow_missing": self.allow_missing}
        if form.fields.get("window"):
            options["window"] = float(form.fields["window"])
        results = []
        for up in form.uploads:
            key = Path(up.name).stem or up.name  # a label only: never opened
            result = self.predictor.predict_safe(
                up.path, key=key, shown_as=up.name, transcript=text if text else None, **options
            )
            results.append(result)
        return results


def create_app(
    predictor: Predictor,
    *,
    queue: int = 8,
    max_upload_mb: float = 200,
    token: str | None = None,
    allow_missing: bool = False,
) -> FastAPI:
    """The app over a loaded `predictor`; its lifespan makes the worker and the private temporary folder."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tmp_root = Path(tempfile.mkdtemp(prefix="deepmlf-serve-"))
        service = Service(
            predictor,
            queue=queue,
            max_upload_bytes=int(max_upload_mb * 2**20),
            allow_missing=allow_missing,
            tmp_root=tmp_root,
        )
        app.state.service = service
        try:
            yield
        finally:  # after the request in flight has finished (uvicorn waits for it)
            service.worker.shutdown(wait=True)
            shutil.rmtree(tmp_root, ignore_errors=True)

    app = FastAPI(
        title="deepmlf",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Multimodal sentiment of uploaded clips with one warm DeepMLF run.",
    )

    @app.exception_handler(HTTPError)
    async def _refused(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    @app.middleware("http")
    async def _token(request: Request, call_next):
        """Every /api call needs `Authorization: Bearer T` when the server has a token."""
        if token is not None and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(
                    {"detail": "this server needs its token: send `Authorization: Bearer <token>`"},
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = package_files("deepmlf_cli").joinpath("web", "index.html").read_text(encoding="utf-8")
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'self' "
                "'unsafe-inline'; script-src 'self' 'unsafe-inline'; img-src 'self' data:"
            },
        )

    @app.get("/api/health")
    async def health(request: Request) -> dict[str, Any]:
        service: Service = request.app.state.service
        return {"status": "ok", "busy": service.lock.locked(), "waiting": max(0, service.admitted - 1)}

    @app.get("/api/model")
    async def model(request: Request) -> dict[str, Any]:
        return request.app.state.service.predictor.card()

    @app.post("/api/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> JSONResponse:
        service: Service = request.app.state.service
        service.admit()
        folder = Path(tempfile.mkdtemp(dir=service.tmp_root))
        try:
            form = await read_form(request, folder, service.max_upload_bytes)
            if not form.uploads:
                raise HTTPError(422, "no file: send one or more clips in the multipart field `files`")
            if form.fields.get("text") and len(form.uploads) > 1:
                raise HTTPError(422, "`text` is one clip's transcript: send it with one file only")
            window = form.fields.get("window")
            if window:
                try:
                    if float(window) <= 0:
                        raise ValueError
                except ValueError:
                    raise HTTPError(422, f"window must be a positive number of seconds, not {window!r}") from None
            async with service.lock:  # one inference at a time, in the one worker thread
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(service.worker, service.predict_all, form)
            ok = any(r["status"] == "ok" for r in results)
            return JSONResponse(results, 200 if ok else 422)
        finally:
            service.admitted -= 1
            shutil.rmtree(folder, ignore_errors=True)

    return app


__all__ = ["DEFAULT_WINDOW_S", "create_app"]
