"""A scripted model for trying the command without a model: `decompose run --model scripted:examples/scripted/rules.py
"Who directed Titanic, and how old was that person when it was released?"`. Each rule is (pattern or predicate,
reply); `latency` makes each call take a moment, so the live view has something to show."""

import json

from decompose.models.scripted import asks_for_plan, asks_to_combine

rules = [
    (
        asks_for_plan,
        json.dumps(
            {
                "steps": [
                    {"id": 1, "question": "Who directed Titanic?"},
                    {"id": 2, "question": "When was {1} born?"},
                    {"id": 3, "question": "When was Titanic released?"},
                    {"id": 4, "question": "How old was someone born in {2} in {3}?"},
                ]
            }
        ),
    ),
    (asks_to_combine, "James Cameron was 43 when Titanic was released."),
    (r"Question: Who directed Titanic", "James Cameron"),
    (r"Question: When was James Cameron born", "1954"),
    (r"Question: When was Titanic released", "1997"),
    (r"Question: How old was someone born in 1954 in 1997", "43"),
]
latency = 0.3
