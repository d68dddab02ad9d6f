"""The ready agents: an `Orchestrator` preset each (tools + instructions + policy). `decompose agents` lists them.

from decompose.agents import build_agent
orch = build_agent("customer-service", model="openai:gpt-4o-mini", db_path="shop.sqlite3")
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from decompose.approvals import ApprovalPolicy, amount_over
from decompose.chains.prompts import Prompts
from decompose.errors import ConfigError
from decompose.intents import IntentRouter
from decompose.orchestrator import Orchestrator
from decompose.routing import CUSTOMER_SERVICE_ROUTES, IntentRouting, Route
from decompose.tools.runner import ToolRunner

CUSTOMER_SERVICE = """You are the customer-service agent of a small online shop.
Look facts up with the tools: never guess an order's status, a date or an amount. To find a customer use
find_customer (by email, or by name plus zip code); their orders come from list_orders. A refund is made only by
calling issue_refund, which checks the policy itself and refuses what the policy does not allow; never tell the
customer a refund was made unless issue_refund succeeded. Policy in short: returns within 30 days of delivery,
damaged items always refundable, never more than was paid. Be brief, polite and concrete."""

# How an agent's final answer reads: to a customer, not to a program.
REPLY = (
    "Reply to the customer in one to three full, polite sentences that answer every part of their message "
    "(each question, and what was done or not done and why). Give amounts with their currency and dates as "
    "the tools give them. Do not mention step numbers or tools."
)

REFUND_APPROVAL_OVER = 100.0  # dollars: a larger refund by the customer-service agent waits for a person

FINANCE = """You are a careful financial analyst.
Every number comes from a tool: use the finance tools for loans, growth, present value, NPV/IRR, CAGR, returns
and currency conversion, the calculator for any other arithmetic, and the market-data tools for prices. Never do
arithmetic in your head. State amounts with their currency and rates in percent."""


@dataclass(frozen=True)
class AgentSpec:
    name: str
    description: str
    instructions: str
    make_tools: Callable[..., list[BaseTool]]
    examples: tuple[str, ...]
    routes: tuple[Any, ...] = ()  # `decompose.routing.Route`s: how a routed conversation handles each intent
    approval: ApprovalPolicy | None = None  # which calls wait for a person with `build_agent(approvals=True)`

    def tool_names(self) -> list[str]:
        return [t.name for t in self.make_tools(dry_run=True)]


def _customer_service_tools(*, db_path: Any = None, today: Any = None, dry_run: bool = False, **_: Any):
    from decompose.tools.calculator import calculator_tools
    from decompose.tools.customer_service import customer_service_tools

    if dry_run:  # names only: never create the demo database just to list tools
        import tempfile

        db_path = db_path or f"{tempfile.mkdtemp(prefix='decompose-')}/names.sqlite3"
    # The calculator first: the shop's worked plans are then the last ones the planner sees before the question.
    return calculator_tools() + customer_service_tools(db_path, today=today)


def _finance_tools(*, market_data: Any = None, **_: Any):  # listing its tools creates nothing: no dry run
    from decompose.tools.calculator import calculator_tools
    from decompose.tools.finance import finance_tools

    return finance_tools(market_data) + calculator_tools()


_AGENTS = {
    "customer-service": AgentSpec(
        name="customer-service",
        description="Order status and tracking, returns and refunds (exactly once), tickets, policy questions.",
        instructions=CUSTOMER_SERVICE,
        make_tools=_customer_service_tools,
        examples=(
            "I'm ann@example.com. Where is my latest order, and can I still return the kettle?",
            "Please refund order A1001 for ann@example.com: the kettle arrived broken.",
        ),
        routes=CUSTOMER_SERVICE_ROUTES,
        approval=amount_over(REFUND_APPROVAL_OVER, tools=("issue_refund",)),
    ),
    "finance": AgentSpec(
        name="finance",
        description="Loans and amortisation, growth, PV/NPV/IRR, CAGR, returns and volatility, currencies.",
        instructions=FINANCE,
        make_tools=_finance_tools,
        examples=(
            "What is the monthly payment on a 200000 USD loan at 6% over 30 years, and the total interest?",
            "If I invest 10000 at 7% a year for 10 years, what is it worth, and what is that in EUR?",
        ),
        # No approval policy: none of its tools changes anything (they compute and read prices).
    ),
}


def list_agents() -> list[AgentSpec]:
    return list(_AGENTS.values())


def get_agent(name: str) -> AgentSpec:
    try:
        return _AGENTS[name]
    except KeyError:
        raise ConfigError(f"unknown agent {name!r}", hint=f"agents: {', '.join(_AGENTS)}") from None


def build_agent(
    name: str,
    model: BaseChatModel | str | None = None,
    *,
    db_path: Any = None,
    market_data: Any = None,
    today: Any = None,
    approvals: bool = False,
    **options: Any,
) -> Orchestrator:
    """An Orchestrator preset for agent `name`; `options` go to the Orchestrator (e.g. max_concurrency). With
    `approvals`, the agent's consequential calls wait for a person (customer service: refunds above
    REFUND_APPROVAL_OVER), which needs `checkpoints=` or a `tool_runner` with an approver."""
    spec = get_agent(name)
    tools = spec.make_tools(db_path=db_path, market_data=market_data, today=today)
    if approvals and spec.approval is not None:
        runner = copy.copy(options.get("tool_runner") or ToolRunner())
        runner.approval = spec.approval
        options["tool_runner"] = runner
    return Orchestrator(
        model, tools=tools, prompts=Prompts.with_instructions(spec.instructions, reply=REPLY), **options
    )


def agent_routing(name: str, router: IntentRouter) -> IntentRouting:
    """Per-turn intent routing for agent `name` (`Conversation(agent, routing=...)`): each route adds its hint and
    worked plan to the agent's instructions and keeps only its tools. An agent without routes gets one catch-all
    route, so turns still report their intent and run unchanged."""
    spec = get_agent(name)
    return IntentRouting(router, spec.routes or (Route(router.fallback),), instructions=spec.instructions)
