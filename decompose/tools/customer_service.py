"""Customer-service tools over a SQLite store (see `cs_store`): look-ups, refund policy, refunds, tickets.

Money in results is a string with two decimals ("49.99"); dates are ISO strings. Refunds and tickets are side
effects: they carry `metadata={"side_effects": True}` and an injected `idempotency_key`, and a repeated call
with the same key returns the first result without writing again.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from langchain_core.tools import BaseTool, InjectedToolArg

from decompose.chains.tool_facts import declare_receipt, declare_verdict
from decompose.tool_schema import closure_tool
from decompose.tools.cs_seed import DAMAGED_WINDOW_DAYS, POLICY, RETURN_WINDOW_DAYS
from decompose.tools.cs_store import Store, default_db_path
from decompose.tools.guards import identifier_args, requires_request

__all__ = ["customer_service_tools", "default_db_path", "POLICY", "RETURN_WINDOW_DAYS", "DAMAGED_WINDOW_DAYS"]

_SIDE_EFFECTS = {"side_effects": True}

# Worked plans for the planner (shown as earlier chat turns). The customer and orders are made up, not the demo
# shop's, and the steps' questions are generic, so a plan that copies one fits any customer: the 1.5B model
# copies examples word for word (their ids too, which the tool guard then replaces by the one the customer gave).
# They show the shape: look up, pass fields ({1.customer_id}, {2.latest_order_id}), find an item's order with a
# question step, and write only what the customer asked for.
PLAN_EXAMPLES = [
    {
        "question": "Hi, I'm zoe@example.com. Has my latest order shipped, and can I still return the desk lamp?",
        "steps": [
            {
                "id": 1,
                "question": "Who is the customer?",
                "depends_on": [],
                "tool": "find_customer",
                "args": {"email": "zoe@example.com"},
            },
            {
                "id": 2,
                "question": "What are the customer's orders?",
                "depends_on": [1],
                "tool": "list_orders",
                "args": {"customer": "{1.customer_id}"},
            },
            {
                "id": 3,
                "question": "What is the status of the latest order?",
                "depends_on": [2],
                "tool": "order_status",
                "args": {"order_id": "{2.latest_order_id}"},
            },
            {
                "id": 4,
                "question": "Which order id in {2} has the item the customer asks about? Reply with the order id only.",
                "depends_on": [2],
            },
            {
                "id": 5,
                "question": "Can that order be returned?",
                "depends_on": [4],
                "tool": "refund_eligibility",
                "args": {"order_id": "{4}"},
            },
        ],
    },
    {
        "question": "Please refund order A2002, the blender arrived broken. My email is zoe@example.com.",
        "steps": [
            {
                "id": 1,
                "question": "Can the order be refunded?",
                "depends_on": [],
                "tool": "refund_eligibility",
                "args": {"order_id": "A2002"},
            },
            {
                "id": 2,
                "question": "Refund what is still refundable",
                "depends_on": [1],
                "tool": "issue_refund",
                "args": {"order_id": "A2002", "amount": "{1.max_refundable}", "reason": "blender arrived broken"},
            },
        ],
    },
]


def customer_service_tools(db_path: str | Path | None = None, *, today: date | None = None) -> list[BaseTool]:
    """The customer-service pack, bound to one SQLite file (created and seeded with a demo shop on first use).

    `db_path=None` uses `$XDG_CACHE_HOME/decompose/customer_service.sqlite3` (default `~/.cache/...`).
    `today` fixes the date the refund policy is judged on (default: the real date at each call); the demo data
    is dated relative to the day the file is seeded.
    """
    store = Store(db_path, today)

    @closure_tool
    def find_customer(
        email: Annotated[str | None, "Customer email address, e.g. ann@example.com"] = None,
        name: Annotated[str | None, "Full name; only used together with zip_code"] = None,
        zip_code: Annotated[str | None, "Postal/ZIP code; only used together with name"] = None,
    ) -> dict:
        """Find a customer by email, or by full name plus zip code. Returns customer_id, name, email, zip_code
        and order_count."""
        return store.find_customer(email, name, zip_code)

    @closure_tool
    def list_orders(customer: Annotated[str, "Customer id (e.g. C001) or email"]) -> dict:
        """List a customer's orders, newest first: order_id, placed_on, status, total, items; plus
        latest_order_id."""
        return store.list_orders(customer)

    @closure_tool
    def order_status(order_id: Annotated[str, "Order id, e.g. A1001"]) -> dict:
        """Status of one order: status (processing/shipped/delivered/cancelled), carrier, tracking_number,
        shipped_on, eta (while in transit), delivered_on, items, paid and refunded amounts."""
        return store.order_status(order_id)

    @closure_tool
    def refund_eligibility(order_id: Annotated[str, "Order id, e.g. A1001"]) -> dict:
        """Check an order against the refund policy. Returns eligible (bool), reason, paid, refunded,
        max_refundable (amount that may still be refunded), delivered_on and window_ends."""
        return store.refund_eligibility(order_id)

    @closure_tool
    def issue_refund(
        order_id: Annotated[str, "Order id, e.g. A1001"],
        amount: Annotated[Decimal, "Amount to refund in the order currency, at most 2 decimals, e.g. 49.99"],
        reason: Annotated[str, "Why the customer is refunded"],
        idempotency_key: Annotated[str, InjectedToolArg],
    ) -> dict:
        """Refund part or all of an order to the original payment method. Re-checks the refund policy and
        refuses ineligible orders or amounts above what is still refundable. Returns refund_id, amount,
        refunded_total and remaining_refundable."""
        return store.issue_refund(order_id, amount, reason, idempotency_key)

    @closure_tool
    def open_ticket(
        customer: Annotated[str, "Customer id (e.g. C001) or email"],
        subject: Annotated[str, "One-line summary of the problem"],
        body: Annotated[str, "Full description for the support team"],
        idempotency_key: Annotated[str, InjectedToolArg],
        order_id: Annotated[str | None, "Order the ticket is about, if any"] = None,
    ) -> dict:
        """Open a support ticket for a customer (damaged items, cancellations, delivery problems, other
        questions). Returns ticket_id and status."""
        return store.open_ticket(customer, subject, body, order_id, idempotency_key)

    @closure_tool
    def search_policy(
        query: Annotated[str, "Keywords, e.g. 'refund damaged item'"],
        limit: Annotated[int, "Maximum number of paragraphs to return (1-20)"] = 3,
    ) -> list[dict]:
        """Search the shop's refund, return, shipping and support policy. Returns the best-matching paragraphs
        (topic, text, score), best first; an empty list when nothing matches."""
        return store.search_policy(query, limit)

    find_customer.metadata = {"plan_examples": PLAN_EXAMPLES}
    issue_refund.metadata = dict(_SIDE_EFFECTS)
    open_ticket.metadata = dict(_SIDE_EFFECTS)
    # A refund or a ticket only when the customer's own words ask for one (asking whether is not asking to).
    requires_request(
        issue_refund,
        r"\b(?:refund|reimburs|money back|return(?:ing)?\b|send (?:it|them) back|"
        r"charge ?back)",
        "Do you want me to issue the refund?",
        amount="amount",
    )
    requires_request(
        open_ticket,
        r"\b(?:ticket|complain|report|escalat|cancel|speak to|talk to|contact|"
        r"support team|look into)",
        "Do you want me to open a support ticket about it?",
    )
    declare_verdict(
        refund_eligibility,
        topic=r"\b(?:refund|return|eligib)",
        yes="Order {order_id} can be refunded until {window_ends}",
        no="Order {order_id} cannot be refunded",
    )
    declare_receipt(
        issue_refund,
        "Refund {refund_id} of {amount} for order {order_id} is done: the money goes back "
        "to the original payment method.",
    )
    declare_receipt(open_ticket, "Support ticket {ticket_id} is open; the support team will reply to you.")
    # Emails and ids come from the customer or from a look-up, never from the model.
    identifier_args(find_customer, "email", "name", "zip_code")
    identifier_args(list_orders, "customer")
    for order_tool in (order_status, refund_eligibility, issue_refund):
        identifier_args(order_tool, "order_id")
    identifier_args(open_ticket, "customer", "order_id")
    return [find_customer, list_orders, order_status, refund_eligibility, issue_refund, open_ticket, search_policy]
