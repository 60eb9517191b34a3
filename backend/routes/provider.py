"""Routes: filled in by the issue that owns them."""

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
