"""The HTTP service (`decompose serve`): `create_app(...)` builds it as an ASGI app. Needs the `serve` extra
(starlette, uvicorn, sqlalchemy)."""

from decompose.serve.app import create_app

__all__ = ["create_app"]
