"""The finance agent. Run: python examples/finance.py [MODEL_SPEC]

Market data comes from a CSV you point at (date,symbol,close); without one a synthetic demo file is generated."""

import sys

from decompose.agents import build_agent, get_agent

agent = build_agent("finance", sys.argv[1] if len(sys.argv) > 1 else None)
for question in get_agent("finance").examples:
    result = agent.run(question)
    print(f"> {question}")
    for step in result.plan.steps if result.plan else []:
        print(f"    {step.id}. [{step.tool or 'model'}] {step.question} -> {step.status}: {step.answer or step.error}")
    print(result.answer or f"(no answer: {result.error})", end="\n\n")
