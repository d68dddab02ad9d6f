"""The customer-service agent on the demo shop. Run: python examples/customer_service.py [MODEL_SPEC]

The demo database is created on first use (a SQLite file in your cache folder; pass db_path= to choose)."""

import sys

from decompose.agents import build_agent, get_agent
from decompose.conversation import Conversation

agent = build_agent("customer-service", sys.argv[1] if len(sys.argv) > 1 else None, max_concurrency=4)
chat = Conversation(agent)
for question in (*get_agent("customer-service").examples, "And when will my latest order arrive?"):
    result = chat.send(question)
    print(f"> {question}")
    for step in result.plan.steps if result.plan else []:
        outcome = step.answer if step.status == "done" else step.error  # an answer of 0 is an answer
        print(f"    {step.id}. [{step.tool or 'model'}] {step.question} -> {step.status}: {outcome}")
    print(result.answer if result.answer is not None else f"(no answer: {result.error})", end="\n\n")
