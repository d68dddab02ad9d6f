"""Shared test helpers (plain functions; fixtures live in conftest.py)."""

import json


def plan_json(*questions_or_steps):
    """A plan reply: strings become steps 1..n; dicts are taken as they are."""
    steps = [{"id": i, "question": q} if isinstance(q, str) else q for i, q in enumerate(questions_or_steps, 1)]
    return json.dumps({"steps": steps})


TITANIC = "Who directed Titanic, and how old was that person when it was released?"
