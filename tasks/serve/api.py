"""The HTTP API of a served model (FastAPI): POST /predict, GET /health, GET /schema, /docs.

One factory serves both the Ray Serve replicas and the plain-uvicorn peer of the benchmark; only
`score` differs (batched across requests in Serve, called directly in the peer).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from .rows import BadRequest, Columns, check, parse_json, to_records

Score = Callable[[dict[str, list], str | None], Awaitable[list[dict]]]

EXAMPLE = [{"column": "value", "another": 1.5}]
BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"oneOf": [{"type": "array", "items": {"type": "object"}, "description": "records"},
                         {"type": "object", "description": "one record, or column → list of values"}]},
    "example": EXAMPLE}}}}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _error(status: int, field: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def _docs(app: FastAPI, title: str) -> None:
    """Swagger UI from files on this machine when fastapi-offline is installed (no CDN needed)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    urls = {}
    try:
        import fastapi_offline
        from starlette.staticfiles import StaticFiles

        static = Path(fastapi_offline.__file__).parent / "static"
        app.mount("/docs-static", StaticFiles(directory=static), name="docs-static")
        urls = {"swagger_js_url": "/docs-static/swagger-ui-bundle.js",
                "swagger_css_url": "/docs-static/swagger-ui.css", "swagger_favicon_url": "/docs-static/favicon.png"}
    except ImportError:
        pass

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} · docs", **urls)


def build_api(info: dict, schema: dict, columns: Columns, score: Score, token_digest: str | None,
              max_body_bytes: int, max_rows: int, health: Callable[[], dict] | None = None) -> FastAPI:
    """The app. `token_digest` None means no auth (loopback only, checked before this is called)."""
    app = FastAPI(title=f"conductor serve: {info.get('run', '')}", docs_url=None, redoc_url=None,
                  description="Predictions from a conductor run directory. Send `Authorization: Bearer TOKEN` "
                              "(printed by `conductor serve`, kept in CONDUCTOR_HOME/serve/token).")
    bearer = HTTPBearer(auto_error=False)

    def owner(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token_digest is None:
            return
        if cred is None or not hmac.compare_digest(digest(cred.credentials), token_digest):
            raise BadRequest(401, "Authorization", "missing or wrong token: send 'Authorization: Bearer TOKEN'")

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, e: BadRequest):
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return _error(e.status, e.field, e.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        return _error(422, ".".join(str(p) for p in first.get("loc", ["request"])), first.get("msg", "invalid"))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException):
        return _error(e.status_code, "path", str(e.detail))

    @app.exception_handler(Exception)
    async def internal(_: Request, e: Exception):  # a failure of ours, never a client's mistake
        return _error(500, "server", f"internal error ({type(e).__name__}); the replica keeps serving")

    @app.get("/health", summary="Liveness; with the token, which run answers")
    async def get_health(request: Request):
        cred = await bearer(request)
        if token_digest is not None and (cred is None or not hmac.compare_digest(digest(cred.credentials), token_digest)):
            return {"status": "ok"}
        return {"status": "ok", **info, "pid": os.getpid(), **(health() if health else {})}

    @app.get("/schema", summary="The input columns and their types", dependencies=[Depends(owner)])
    async def get_schema():
        return schema

    @app.post("/predict", summary="Predictions for raw rows", dependencies=[Depends(owner)],
              openapi_extra=BODY_DOC)
    async def post_predict(request: Request, id: str | None = Query(None, description="column to carry next to "  # noqa: A002
                                                                    "each prediction")):
        raw = await _read_body(request, max_body_bytes)
        rows = check(to_records(parse_json(raw)), columns, max_rows, id)
        out = await score(rows, id)
        return {**info, "rows": len(out), "predictions": out}

    _docs(app, app.title)
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, "body", f"body of {int(declared)} bytes is over the limit of {limit} "
                                      "(conductor serve --max-body-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body", f"body is over the limit of {limit} bytes (conductor serve --max-body-mb)")
        chunks.append(chunk)
    return b"".join(chunks)
