import gc
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import plan_json

# A shell starts a background job (`bash .ci/run &`) with SIGINT ignored, and every child inherits that: the
# tests that press Ctrl-C on a command would see it run to the end. They test the command, not the launcher.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def hub_offline(monkeypatch):
    """The Hugging Face Hub off for one test: models load from disk, nothing is looked up online. huggingface_hub
    reads HF_HUB_OFFLINE once, when it is imported: the variable is set for processes started here, the read
    value for this one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        import huggingface_hub.constants
    except ImportError:  # no Hub client, nothing that could go online
        return
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def titanic_model():
    # Imports in the fixtures: the xdist controller loads this file too, runs no test, and starts the workers after.
    from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine

    return ScriptedChatModel(
        rules=[
            (
                asks_for_plan,
                plan_json(
                    "Who directed Titanic?",
                    "When was {1} born?",
                    "When was Titanic released?",
                    "How old was someone born in {2} in {3}?",
                ),
            ),
            (asks_to_combine, lambda msgs: "Final: " + msgs[-1].content.split("Sub-questions and answers:")[1].strip()),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: When was James Cameron born", "1954"),
            (r"Question: When was Titanic released", "1997"),
            (r"Question: How old was someone born in 1954 in 1997", "43"),
        ]
    )


@pytest.fixture(scope="module")
def server():
    """A real fault-injecting OpenAI-compatible server on 127.0.0.1, one per test module."""
    from fault_server import FaultServer

    with FaultServer() as srv:
        yield srv


@pytest.fixture
def fault(server):
    """The module's fault server with no fault scripted and no request recorded yet."""
    server.reset()
    return server


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """An empty cache folder ($DECOMPOSE_CACHE) for one test module: the embedded model converts into it on first
    use, as on a fresh machine."""
    root = tmp_path_factory.mktemp("decompose-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DECOMPOSE_CACHE", str(root))
        yield root


# A SQLAlchemy URL for a store under test: a SQLite file and, where DECOMPOSE_TEST_POSTGRES names a PostgreSQL
# server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/), a fresh PostgreSQL database of the test's own.
POSTGRES = os.environ.get("DECOMPOSE_TEST_POSTGRES")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    if not POSTGRES:
        pytest.skip("set DECOMPOSE_TEST_POSTGRES to a PostgreSQL server URL to run the stores on PostgreSQL too")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    name = f"decompose_{uuid.uuid4().hex[:12]}"
    server = sqlalchemy.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with server.connect() as db:
        db.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield POSTGRES.rstrip("/") + f"/{name}"
    gc.collect()  # the test's stores, dropped: each closes its connections as it goes
    with server.connect() as db:
        db.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
    server.dispose()
