"""Routing a customer's turn by its intent: the detected intent picks a `Route` (a group of intents with its own
instructions, worked plan and tools), and the turn runs on an Orchestrator made for that route.

    chat = Conversation(agent, routing=IntentRouting(router, CUSTOMER_SERVICE_ROUTES, instructions=...))
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from decompose.chains.prompts import Prompts
from decompose.events import IntentDetected
from decompose.intents import FALLBACK_INTENT, IntentPrediction, IntentRouter, intent_key

if TYPE_CHECKING:
    from decompose.orchestrator import Orchestrator


@dataclass(frozen=True)
class Route:
    """A group of intents and what a turn in it gets: `tools` (names; empty: all the agent's tools) and
    `instructions` added to the agent's own (a hint and a worked plan). An intent belongs to the first route
    whose `keywords` one of its name's words matches; `intents` lists exact names."""

    name: str
    instructions: str = ""
    tools: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    intents: frozenset[str] = field(default_factory=frozenset)

    def matches(self, intent: str) -> bool:
        key = intent_key(intent)
        return (
            intent in self.intents
            or key == intent_key(self.name)
            or any(re.search(rf"(^|_){re.escape(k)}", key) for k in self.keywords)
        )


CUSTOMER_SERVICE_ROUTES: tuple[Route, ...] = (
    Route(
        "refunds",
        keywords=("refund", "reverted", "charged_twice", "not_recognised", "extra_charge"),
        tools=(
            "find_customer",
            "list_orders",
            "order_status",
            "refund_eligibility",
            "issue_refund",
            "search_policy",
            "calculator",
        ),
        instructions="This message asks for money back or disputes a charge. Worked plan: find_customer (by "
        "email) → list_orders → refund_eligibility of the order → issue_refund only for an "
        "eligible order and at most max_refundable. Tell the customer exactly what was refunded, or "
        "why not.",
    ),
    Route(
        "balance_top_up",
        keywords=("top_up", "balance", "deposit", "receiving_money"),
        tools=("find_customer", "list_orders", "search_policy", "open_ticket", "calculator"),
        instructions="This message is about the account's balance, a top-up or a payment that has not shown up. "
        "Worked plan: find_customer → search_policy for the rule that applies → open_ticket when "
        "the money is missing, giving the amounts and dates the customer named.",
    ),
    Route(
        "transfers",
        keywords=("transfer", "beneficiary"),
        tools=("find_customer", "search_policy", "open_ticket"),
        instructions="This message is about a transfer. Worked plan: find_customer → search_policy (timing, "
        "fees, cancellation) → open_ticket for a declined, failed or missing transfer, with the "
        "amount and date.",
    ),
    Route(
        "card_issues",
        keywords=("card", "pin", "atm", "contactless", "cash_withdrawal", "apple_pay", "visa", "passcode", "phone"),
        tools=("find_customer", "search_policy", "open_ticket"),
        instructions="This message is about a card (delivery, activation, PIN, a lost, stolen or declined "
        "card). The tools cannot change a card: find_customer → search_policy → open_ticket "
        "naming the card problem, and tell the customer the ticket id.",
    ),
    Route(FALLBACK_INTENT),  # everything else: the agent as it is
)


class IntentRouting:
    """Routes each turn: `router` names the intent, the first matching route of `routes` says which tools and
    instructions the turn gets. `instructions`: the agent's own, which a route's are added to."""

    def __init__(
        self, router: IntentRouter, routes: Sequence[Route] = CUSTOMER_SERVICE_ROUTES, *, instructions: str = ""
    ):
        self.router = router
        self.routes = tuple(routes)
        self.instructions = instructions.strip()
        # the Orchestrators made per base and route; a base that is gone takes its own with it
        self._made: weakref.WeakKeyDictionary[Orchestrator, dict[str, Orchestrator]] = weakref.WeakKeyDictionary()

    def route_for(self, intent: str) -> Route | None:
        """The first route `intent` matches, else the route named after the fallback intent (the catch-all)."""
        fallback = getattr(self.router, "fallback", FALLBACK_INTENT)
        return next((r for r in self.routes if r.matches(intent)), None) or next(
            (r for r in self.routes if r.name == fallback), None
        )

    async def aroute(self, text: str, base: Orchestrator) -> tuple[IntentDetected, Orchestrator]:
        """The detected intent (as the event the turn starts with) and the Orchestrator to answer it with."""
        try:
            found = await self.router.aclassify(text)
        except Exception as exc:  # noqa: BLE001 — a router failure must not sink the turn: the agent as it is
            found = IntentPrediction(self.router.fallback, 0.0, self.router.name, error=f"{type(exc).__name__}: {exc}")
        route = self.route_for(found.intent)
        event = IntentDetected(
            intent=found.intent,
            confidence=found.confidence,
            router=found.router,
            route=route.name if route else None,
            error=found.error,
        )
        return event, self.orchestrator_for(route, base)

    def orchestrator_for(self, route: Route | None, base: Orchestrator) -> Orchestrator:
        """`base` with the route's tools and instructions (made once per route); `base` itself for a route that
        changes nothing."""
        if route is None or (not route.tools and not route.instructions):
            return base
        made = self._made.setdefault(base, {})
        if route.name not in made:
            tools = [t for t in base.tools if t.name in route.tools] if route.tools else list(base.tools)
            tools = tools or list(base.tools)  # an agent without the route's tools keeps its own
            text = "\n\n".join(p for p in (self.instructions, route.instructions) if p)
            made[route.name] = base.replace(
                tools=tools, prompts=Prompts.with_instructions(text, reply=base.prompts.reply)
            )
        return made[route.name]
