"""Request bodies: JSON objects under a size limit, and the fields every route checks the same way."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from decompose.errors import InputError
from decompose.orchestrator import check_question
from decompose.serve.errors import ApiError


async def read_json(request: Request, limit: int, *, example: str) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); 413 past `limit` bytes, 400 when not a JSON object."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():  # a chunked body has no length to check up front
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})", f"send JSON like {example}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(data).__name__}", f"send {example}")
    return data


def question_of(body: dict[str, Any], *, example: str) -> str:
    """The `question` field, checked before anything is stored or run, as the Orchestrator checks it (422 with
    its InputError's message)."""
    question = body.get("question")
    if question is None:
        raise ApiError(422, "no question given", f"send {example}")
    try:
        return check_question(question)
    except InputError as exc:
        raise ApiError(422, str(exc.args[0]), exc.hint or f"send {example}") from None


def optional_str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise ApiError(
            422,
            f"{field!r} must be a string, got {type(value).__name__}",
            f'give the {field} as a name, e.g. "customer-service"',
        )
    return value


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"the request body is over {limit} bytes", "send a shorter body (the server's limit is --max-body-bytes)"
    )
