"""A scripted model for trying `decompose eval` without a model:
`decompose eval examples/scripted/qs.jsonl --model scripted:examples/scripted/evalrules.py`. Every question gets a
two-step plan; the combined answer is looked up by topic ("I don't know" otherwise). A question about something
"broken" makes the model fail, to show how a failed row is recorded and run again on resume; `SCRIPTED_LATENCY`
(seconds) slows every call, to watch the live progress."""

import json
import os

from decompose.models.scripted import asks_for_plan, asks_to_combine

ANSWERS = {
    "capital of France": "Paris",
    "ducks": "18",
    "sky green": "no",
    "big apple": "New York",
    "broken": ValueError("model broke"),
}


def by_topic(messages):
    text = messages[-1].content
    for topic, answer in ANSWERS.items():
        if topic in text:
            if isinstance(answer, Exception):
                raise answer
            return answer
    return "I don't know"


rules = [
    (
        asks_for_plan,
        json.dumps({"steps": [{"id": 1, "question": "First part?"}, {"id": 2, "question": "Second part, given {1}?"}]}),
    ),
    (asks_to_combine, by_topic),
    (r"Question: First part", "one"),
    (r"Question: Second part", "two"),
    (r"Question:", by_topic),
]
latency = float(os.environ.get("SCRIPTED_LATENCY", "0"))
