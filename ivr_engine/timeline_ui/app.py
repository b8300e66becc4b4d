"""``create_timeline_ui_app``: the customer timeline page as an aiohttp sub-app.

Routes (relative to the mount point, normally ``/timeline``):

* ``GET /`` the page (``<mount>`` alone redirects to ``<mount>/``: the page uses relative URLs)
* ``GET /static/{timeline.js,timeline.css}``

Everything else is a 404. The page itself reads through the JSON API, which must be served
on the same origin under ``api_base`` (``"/"`` when the sub-app is mounted on the API app).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from ivr_engine.domain.errors import ConfigError
from ivr_engine.ports import TimelineStore
from ivr_engine.timeline_ui.assets import PAGE, Assets, load_assets, normalise_api_base
from ivr_engine.timeline_ui.headers import security_headers_middleware

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200  # the API's own ceiling for ``limit``

ASSETS = web.AppKey[Assets]("timeline_ui_assets")
STORE = web.AppKey[TimelineStore]("timeline_ui_store")

routes = web.RouteTableDef()


def create_timeline_ui_app(
    store: TimelineStore,
    *,
    api_base: str = "/",
    page_size: int = DEFAULT_PAGE_SIZE,
    token_required: bool = False,
) -> web.Application:
    """The page sub-app. ``api_base``: where the JSON API is mounted on this origin;
    ``page_size``: events per request (the "load older" step), 1 to 200; ``token_required``:
    the API has ``api_tokens``, so the page asks for one before searching (it also asks
    whenever the API answers 401, and keeps the token in the tab's sessionStorage only).

    ``store`` is kept on the app (``STORE``) for server-side additions; the page itself only
    talks to the API, so what it shows is exactly what the API answers.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"timeline_ui page_size: {page_size} is not between 1 and 200")
    app = web.Application(middlewares=[security_headers_middleware])
    app[STORE] = store
    app[ASSETS] = load_assets(
        api_base=normalise_api_base(api_base), page_size=page_size, token_required=token_required
    )
    app.add_routes(routes)
    return app


@routes.get("")
async def add_slash(request: web.Request) -> web.Response:
    """The page uses relative URLs, so it must be served at ``<mount>/`` (query kept)."""
    query = request.rel_url.raw_query_string
    raise web.HTTPFound(request.path + "/" + (f"?{query}" if query else ""))


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return _serve(request, PAGE)


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == PAGE or name not in request.app[ASSETS]:
        raise web.HTTPNotFound(reason="no such file")
    return _serve(request, name)


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS][name]
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8")
