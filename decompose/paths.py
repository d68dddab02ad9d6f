"""Where decompose keeps what it makes for you (the converted embedded model, the demo shop database, the demo
market data): one rule for all of them."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$DECOMPOSE_CACHE`, else `$XDG_CACHE_HOME/decompose`, else `~/.cache/decompose` (not created here)."""
    if root := os.environ.get("DECOMPOSE_CACHE"):
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "decompose"
