"""A scripted model for trying `decompose eval` without a model:
`decompose eval examples/scripted/qs.jsonl --model scripted:examples/scripted/evalrules.py`. Every question gets a
two-step plan; the combined answer is looked up by topic ("I don't know" otherwise)."""

import json

from decompose.models.scripted import asks_for_plan, asks_to_combine

ANSWERS = {"capital of France": "Paris", "ducks": "18", "sky green": "no", "big apple": "New York"}


def by_topic(messages):
    text = messages[-1].content
    return next((answer for topic, answer in ANSWERS.items() if topic in text), "I don't know")


rules = [
    (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "First part?"},
                                          {"id": 2, "question": "Second part, given {1}?"}]})),
    (asks_to_combine, by_topic),
    (r"Question: First part", "one"),
    (r"Question: Second part", "two"),
    (r"Question:", by_topic),
]
