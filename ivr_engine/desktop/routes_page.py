"""The page itself: ``/`` (index.html), ``/static/<file>``, and ``<base>`` → ``<base>/``."""

from __future__ import annotations

from aiohttp import web

from ivr_engine.desktop.keys import ASSETS

routes = web.RouteTableDef()


@routes.get("")
async def add_slash(request: web.Request) -> web.Response:
    """The page uses relative URLs, so it must be served at ``<base>/``."""
    raise web.HTTPFound(request.path + "/")


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    return _serve(request, "index.html")


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name == "index.html" or name not in request.app[ASSETS]:
        raise web.HTTPNotFound(reason="no such file")
    return _serve(request, name)


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS][name]
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8")
