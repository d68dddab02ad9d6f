"""Plug your own tool into decompose in a few lines. Run: python examples/custom_tool.py [MODEL_SPEC]"""

import sys

from decompose import Orchestrator, tool

SHELF = {"dune": 12, "emma": 0, "ulysses": 3}


@tool
def stock_level(title: str) -> int:
    """How many copies of a book (by title) are on the shelf."""
    return SHELF.get(title.strip().lower(), 0)


orch = Orchestrator(sys.argv[1] if len(sys.argv) > 1 else None, tools=[stock_level])
result = orch.run("How many copies of Dune and of Ulysses do we have in total?")
for step in result.plan.steps:
    print(f"  {step.id}. {step.question} [{step.tool or 'model'}] -> {step.answer!r} ({step.status})")
print("Answer:", result.answer)
