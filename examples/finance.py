"""The finance agent. Run: python examples/finance.py [MODEL_SPEC]

Market data comes from a CSV you point at (date,symbol,close); without one a synthetic demo file is generated."""

import sys

from decompose.agents import build_agent, get_agent

agent = build_agent("finance", sys.argv[1] if len(sys.argv) > 1 else None)
for question in get_agent("finance").examples:
    result = agent.run(question)
    print(f"> {question}")
    for step in result.plan.steps if result.plan else []:
        outcome = step.answer if step.status == "done" else step.error  # an answer of 0 is an answer
        print(f"    {step.id}. [{step.tool or 'model'}] {step.question} -> {step.status}: {outcome}")
    print(result.answer if result.answer is not None else f"(no answer: {result.error})", end="\n\n")
