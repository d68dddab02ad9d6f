"""Tool approvals: the customer-service agent's refunds above 100 dollars wait for a person.
Run: python examples/approvals.py [MODEL_SPEC]

Without MODEL_SPEC a scripted model writes the plan (nothing to download). The shop is a fresh demo file in a
temporary folder whose records say the camping tent of order A1023 (189 dollars) arrived damaged, so a full
refund is within the shop's policy, and above the 100 dollars a person must approve. The run stops awaiting
approval (saved in a checkpoint store: the decision may come hours later, from another process), a person
approves, and the run goes on from where it stopped: the refund is made, once."""

import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from decompose import Approve
from decompose.agents import build_agent
from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine
from decompose.tools.customer_service import customer_service_tools

QUESTION = "I'm jon@example.com. The tent of order A1023 arrived torn: please refund it in full."
PLAN = {
    "steps": [
        {"id": 1, "question": "What may be refunded on A1023?", "tool": "refund_eligibility",
         "args": {"order_id": "A1023"}},
        {"id": 2, "question": "Refund A1023 in full", "tool": "issue_refund", "depends_on": [1],
         "args": {"order_id": "A1023", "amount": "189.00", "reason": "the tent arrived torn"}},
    ]
}  # fmt: skip

folder = Path(tempfile.mkdtemp(prefix="decompose-approvals-"))
shop = folder / "shop.sqlite3"
customer_service_tools(shop)  # creates and seeds the demo shop
with sqlite3.connect(shop) as db:
    db.execute("UPDATE order_items SET damaged = 1 WHERE order_id = 'A1023'")

model = sys.argv[1] if len(sys.argv) > 1 else None
if model is None:
    model = ScriptedChatModel(
        rules=[(asks_for_plan, json.dumps(PLAN)), (asks_to_combine, "Your tent (order A1023) is refunded in full.")]
    )
agent = build_agent("customer-service", model, db_path=shop, approvals=True, checkpoints=folder / "runs.sqlite3")

result = agent.run(QUESTION)
if not result.awaiting_approval:
    print(f"nothing waited for approval: {result.answer or result.error}")
    sys.exit(0)
for request in agent.approvals(result.run_id):  # what a person is shown (the server and `decompose runs` too)
    print(f"waiting: step {request.step_id} wants {request.tool}({request.args}): {request.reason}")

# The person approves each waiting call (Edit(args) changes the arguments, Reject(reason) refuses the call).
result = agent.resume(result.run_id, decisions={r.step_id: Approve() for r in result.approvals})
for step in result.plan.steps if result.plan else []:
    outcome = step.answer if step.status == "done" else step.error
    print(f"    {step.id}. [{step.tool or 'model'}] {step.question} -> {step.status}: {outcome}")
print(result.answer if result.answer is not None else f"(no answer: {result.error})")
