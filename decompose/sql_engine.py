"""Opening a SQLAlchemy database the way both stores need it (the server's conversations, the runs' checkpoints):
a SQLite file's folder made, a bad URL or a missing driver a `ConfigError`, and SQLite connections that wait for
another process's lock and let readers work beside one writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from decompose.errors import ConfigError


def open_engine(
    url: str,
    *,
    what: str,
    hint: str,
    busy_timeout_ms: int,
    pragmas: Sequence[str] = (),
    check_file: Callable[[Path], None] | None = None,
) -> tuple[Engine, Path | None]:
    """The engine for `url`, and its SQLite file (None for another database or an in-memory one).

    `what` and `hint` name the store in the error for a URL that cannot be used; `check_file` sees a SQLite file's
    path before its folder is made; `pragmas` are run on each SQLite connection after the busy timeout and WAL."""
    try:
        parsed = make_url(url)
        path = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database)
            if check_file is not None:
                check_file(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use {what} {url!r}: {exc}", hint=hint) from None
    if engine.dialect.name == "sqlite":

        def on_connect(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # The busy timeout first: switching to WAL needs the lock another process may hold at that moment.
            # WAL lets readers work beside one writer (several processes on one file).
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode=WAL")
            for pragma in pragmas:
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        event.listen(engine, "connect", on_connect)
    return engine, path
