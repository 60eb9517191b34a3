"""The simulated Kommo UI that hosts the widget: the page, the widget's files (with `config.js`
naming this server as the backend), jQuery from `xstatic-jquery`, RequireJS when
`SANDBOX_REQUIREJS` names one, the widget's stored settings, and the `X-Auth-Token` Kommo would mint.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import xstatic.pkg.jquery
from joserfc import jwt
from joserfc.jwk import OctKey
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from backend.bundle import bundle_root
from backend.sandbox import demo as demo_data
from backend.sandbox.kommo_store import USER_ID
from backend.templating import TEMPLATES

STATIC = Path(__file__).parent / "static"
LANGS = ("en", "es", "pt")
WIDGET_CODE = "mailsync"
USER_NAME = "Demo Admin"
TOKEN_LIFETIME = 1800  # as in Kommo's documented example (per Kommo's widget documentation)
NO_CACHE = {"Cache-Control": "no-store"}


def world(request: Request) -> Any:
    return request.app.state.world


def origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def home(request: Request) -> Response:
    return RedirectResponse("/sandbox/", status_code=307)


async def page(request: Request) -> Response:
    lang = request.query_params.get("lang", "en")
    if lang not in LANGS:
        lang = "en"
    w = world(request)
    host = {"account": {"id": w.demo.account_id, "subdomain": demo_data.SUBDOMAIN,
                        "name": demo_data.ACCOUNT_NAME},
            "user": {"id": USER_ID, "name": USER_NAME}, "lang": lang, "widget_code": WIDGET_CODE,
            "widget_path": f"{origin(request)}/sandbox/widget", "version": _version(),
            "requirejs": bool(w.settings.sandbox_requirejs), "keys": w.demo.keys(),
            "client_id": w.settings.client_id}
    return TEMPLATES.TemplateResponse(request, "sandbox.html", {
        "host": host, "host_json": json.dumps(host).replace("</", "<\\/"), "langs": LANGS, "lang": lang,
        "ready": w.demo.installed, "error": w.demo.error}, headers=NO_CACHE)


def _version() -> str:
    manifest = json.loads((bundle_root() / "manifest.json").read_text(encoding="utf-8"))
    return str(manifest.get("widget", {}).get("version", "0"))


def widget_file(request: Request) -> Response:
    root = (bundle_root() / "widget").resolve()
    path = (root / request.path_params["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such widget file")
    return FileResponse(path, headers=NO_CACHE)


async def widget_config(request: Request) -> Response:
    """What `mailsync widget build` writes from PUBLIC_URL; here, the origin the page came from,
    so the widget's backend calls stay on the page's own origin."""
    body = ("define([], function () {\n  'use strict';\n"
            f"  return {{BACKEND_URL: {json.dumps(origin(request))}}};\n}});\n")
    return Response(body, media_type="text/javascript", headers=NO_CACHE)


def manifest(request: Request) -> Response:
    return FileResponse(bundle_root() / "manifest.json", headers=NO_CACHE)


async def jquery(request: Request) -> Response:
    return FileResponse(Path(xstatic.pkg.jquery.BASE_DIR) / "jquery.js")


def requirejs(request: Request) -> Response:
    configured = world(request).settings.sandbox_requirejs
    if not configured or not Path(configured).is_file():
        raise HTTPException(404, "SANDBOX_REQUIREJS does not name a require.js file")
    return FileResponse(configured, media_type="text/javascript")


def mint_token(settings: Any, account_id: int, subdomain: str, *, now: int | None = None) -> str:
    """The one-time token Kommo hands `$authorizedAjax` (per Kommo's widget documentation)."""
    issued = int(time.time()) if now is None else now
    claims = {"iss": f"https://{subdomain}.kommo.com", "aud": settings.public_origin,
              "jti": str(uuid.uuid4()), "iat": issued, "nbf": issued,
              "exp": issued + TOKEN_LIFETIME, "account_id": account_id, "user_id": USER_ID,
              "subdomain": subdomain, "client_uuid": settings.client_id, "is_admin": True}
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims,
                      OctKey.import_key(settings.client_secret.reveal()))


async def token(request: Request) -> Response:
    w = world(request)
    return JSONResponse({"token": mint_token(w.settings, w.demo.account_id, demo_data.SUBDOMAIN),
                         "expires_in": TOKEN_LIFETIME}, headers=NO_CACHE)


async def widget_settings(request: Request) -> Response:
    """The widget's settings as Kommo stores them (the manifest's one `custom` field)."""
    fields = world(request).widget_fields
    if request.method == "PUT":
        body = await request.json()
        if not isinstance(body, dict):
            raise HTTPException(400, "send an object of setting values")
        fields.update({str(k): v for k, v in body.items()})
    return JSONResponse(fields, headers=NO_CACHE)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/sandbox", home, methods=["GET"]),
    Route("/sandbox/", page, methods=["GET"]),
    Route("/sandbox/manifest.json", manifest, methods=["GET"]),
    Route("/sandbox/widget/classes/config.js", widget_config, methods=["GET"]),
    Route("/sandbox/widget/{path:path}", widget_file, methods=["GET"]),
    Route("/sandbox/vendor/jquery.js", jquery, methods=["GET"]),
    Route("/sandbox/vendor/require.js", requirejs, methods=["GET"]),
    Route("/sandbox/api/token", token, methods=["POST"]),
    Route("/sandbox/api/widget-settings", widget_settings, methods=["GET", "PUT"]),
    Mount("/sandbox/static", app=StaticFiles(directory=STATIC), name="sandbox-static"),
]
