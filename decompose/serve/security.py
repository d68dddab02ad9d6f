"""API keys and per-key rate limits, checked before any route runs.

Keys are kept only as sha256 digests and compared with `hmac.compare_digest`, so neither memory nor timing gives
one away. Rate limits are a token bucket per key (per client address when there are no keys), per replica.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from decompose.errors import ConfigError
from decompose.serve.errors import error_response

KEY_HINT = "send the key as 'Authorization: Bearer KEY' (or an X-API-Key header)"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class ApiKeys:
    def __init__(self, keys: Iterable[str]):
        keys = list(keys)
        if not keys or any(not isinstance(k, str) or not k.strip() for k in keys):
            raise ConfigError(
                "API keys must be non-empty strings, and at least one is needed",
                hint="give api_keys=['a-long-random-key'], or leave api_keys out to serve without keys",
            )
        self._digests = [_digest(k.strip()) for k in keys]

    def identify(self, presented: str) -> str | None:
        """The key's identity (its digest, hex) when it is one of ours, else None. Every digest is compared, so
        the time taken does not tell which one matched."""
        candidate = _digest(presented)
        found = None
        for digest in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = digest.hex()
        return found


def read_keys(path: str) -> list[str]:
    """`--api-key-file`: one key a line; blank lines and lines starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            keys = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read API key file {path}: {getattr(exc, 'strerror', None) or exc}",
            hint="give a text file with one key per line",
        ) from None
    if not keys:
        raise ConfigError(f"API key file {path} has no keys", hint="write one key per line")
    return keys


def parse_rate(text: str) -> int:
    """'60/min' (or '60/minute', '60'): requests a minute."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(?:min|minute|m))?\s*", text)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"rate limit {text!r} is not N/min", hint="write e.g. --rate-limit 60/min")
    return int(match.group(1))


class RateLimiter:
    """A bucket of `per_minute` requests per identity, refilled continuously."""

    MAX_TRACKED = 10_000  # identities kept before idle (full) buckets are dropped

    def __init__(self, per_minute: int):
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, when)

    def take(self, identity: str) -> float | None:
        """None when the request may go ahead; else the seconds until it may."""
        now = time.monotonic()
        tokens, when = self._buckets.get(identity, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - when) * self.rate)
        if tokens < 1:
            self._buckets[identity] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[identity] = (tokens - 1, now)
        if len(self._buckets) > self.MAX_TRACKED:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        refill = self.capacity / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill}


class Guard:
    """ASGI middleware: 401 without a valid key (when keys are set), 429 with Retry-After over the rate (per key;
    per address for requests without a valid key)."""

    def __init__(self, app: ASGIApp, *, keys: ApiKeys | None, limiter: RateLimiter | None):
        self.app, self.keys, self.limiter = app, keys, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client = scope.get("client")
        identity = f"address {client[0] if client else 'unknown'}"
        if self.keys is not None:
            presented = _presented_key(dict(scope["headers"]))
            key = self.keys.identify(presented) if presented is not None else None
            if key is None:  # refusals count against the address: guessing keys is rate-limited too
                refusal = self._over_rate(identity) or error_response(
                    401,
                    "an API key is required" if presented is None else "the API key is not valid",
                    KEY_HINT if presented is None else "check the key; " + KEY_HINT,
                    {"WWW-Authenticate": "Bearer"},
                )
                return await refusal(scope, receive, send)
            identity = f"key {key}"
        over = self._over_rate(identity)
        if over is not None:
            return await over(scope, receive, send)
        await self.app(scope, receive, send)

    def _over_rate(self, identity: str) -> JSONResponse | None:
        wait = self.limiter.take(identity) if self.limiter is not None else None
        if self.limiter is None or wait is None:
            return None
        seconds = max(1, math.ceil(wait))
        return error_response(
            429,
            f"rate limit reached ({self.limiter.capacity:g} requests a minute)",
            f"retry after {seconds}s",
            {"Retry-After": str(seconds)},
        )


def _presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None
