"""Shared test helpers (plain functions; fixtures live in conftest.py).

Test files import them, and the servers in servers.py and fault_server.py, one way: `from helpers import ...`
(tests/ has no __init__.py, so pytest puts the folder itself on sys.path). Never `from tests.helpers` or
`from tests.conftest`, and no sys.path edits in test files.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def plan_json(*questions_or_steps):
    """A plan reply: strings become steps 1..n; dicts are taken as they are."""
    steps = [{"id": i, "question": q} if isinstance(q, str) else q for i, q in enumerate(questions_or_steps, 1)]
    return json.dumps({"steps": steps})


TITANIC = "Who directed Titanic, and how old was that person when it was released?"


def cli(*args, cwd, input=None, env=None, timeout=60):
    """Run `python -m decompose.cli ARGS` as a user would; returns the CompletedProcess (text)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "FORCE_COLOR")}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "decompose.cli", *args], cwd=cwd, input=input, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
