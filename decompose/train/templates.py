"""Synthetic tool plans for the calculator, finance and customer-service packs, from templates.

Each template draws its numbers, names and ids at random, words the question one of several ways, and writes
the plan with the right tool and arguments. Templates marked `held_out` never make training rows: they test
whether a trained decomposer handles wordings and tool combinations it has not seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from decompose.plan import Plan
from decompose.tools.cs_seed import demo_customers, demo_order_ids
from decompose.train.data import Example, tool_set

FIRST = [
    "Ann",
    "Ben",
    "Carla",
    "Dev",
    "Eva",
    "Femi",
    "Grace",
    "Hugo",
    "Ivy",
    "Jon",
    "Kofi",
    "Lena",
    "Mia",
    "Noah",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
    "Uma",
    "Vera",
    "Wei",
    "Yara",
    "Zoe",
]
LAST = ["Lee", "Okafor", "Silva", "Patel", "Novak", "Kim", "Moreau", "Chen", "Berg", "Garcia", "Ito", "Haddad"]
DOMAINS = ["example.com", "mail.test", "shop.example", "inbox.test"]
ITEMS = ["pens", "apples", "notebooks", "tickets", "mugs", "candles", "books", "plants"]
PRODUCTS = ["kettle", "lamp", "speaker", "chair", "vase", "jacket", "keyboard", "mouse", "tent", "pillow"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD"]
SYMBOLS = ["ACME", "GLOBX", "INITX", "UMBRA"]

Steps = list[dict[str, Any]]


@dataclass(frozen=True)
class Template:
    name: str
    pack: str  # "calculator", "finance" or "customer-service": the tools the decomposer is shown
    wordings: tuple[str, ...]
    draw: Callable[[random.Random], tuple[dict[str, Any], Steps]]  # values for the wording, and the plan
    held_out: bool = False

    def example(self, rng: random.Random) -> Example:
        values, steps = self.draw(rng)
        question = rng.choice(self.wordings).format(**values)
        numbered = [{"id": i, **step} for i, step in enumerate(steps, 1)]
        return Example(
            question,
            Plan.from_data({"steps": numbered}),
            list(tool_set(self.pack)),
            "tools-unseen" if self.held_out else "tools",
        )


def _tool(question: str, tool: str, **args: Any) -> dict[str, Any]:
    return {"question": question, "tool": tool, "args": args}


class Draws(random.Random):
    """The random draws of one set of rows. `shop_share`: how often a customer or order is one the demo shop
    has (held-out rows: always, so their answers can be checked by running the plan; training rows: half the
    time, the other half made up, so the model learns to copy ids rather than remember the shop's)."""

    def __init__(self, seed: int, shop_share: float):
        super().__init__(seed)
        self.shop_share = shop_share

    def from_shop(self) -> bool:
        return self.random() < self.shop_share


def _email(rng: Draws) -> str:
    if rng.from_shop():
        return rng.choice(demo_customers())[1]
    return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@{rng.choice(DOMAINS)}"


def _order(rng: Draws) -> str:
    return rng.choice(demo_order_ids()) if rng.from_shop() else f"A{rng.randint(1001, 1099)}"


def _money(rng: random.Random, low: int, high: int, step: int) -> int:
    return rng.randrange(low, high + 1, step)


def _date(rng: random.Random) -> str:
    return f"{rng.choice([2023, 2024])}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


# --- calculator ---------------------------------------------------------------------------------------------
def _total_cost(rng):
    v = {"name": rng.choice(FIRST), "n": rng.randint(2, 12), "item": rng.choice(ITEMS), "price": rng.randint(2, 40)}
    return v, [
        _tool(
            f"What do {v['n']} {v['item']} at {v['price']} dollars cost?",
            "calculator",
            expression=f"{v['n']} * {v['price']}",
        )
    ]


def _change(rng):
    v = {"name": rng.choice(FIRST), "n": rng.randint(2, 6), "item": rng.choice(ITEMS), "price": rng.randint(2, 9)}
    v["bill"] = rng.choice([b for b in (20, 50, 100) if b > v["n"] * v["price"]])
    return v, [
        _tool(
            f"What do {v['n']} {v['item']} at {v['price']} dollars cost?",
            "calculator",
            expression=f"{v['n']} * {v['price']}",
        ),
        _tool("What is {bill} minus {{1}}?".format(**v), "calculator", expression=f"{v['bill']} - {{1}}"),
    ]


def _percent_of(rng):
    v = {"pct": rng.choice([5, 10, 12, 15, 20, 25, 30, 40]), "x": rng.randrange(40, 2000, 10)}
    return v, [_tool(f"What is {v['pct']}% of {v['x']}?", "calculator", expression=f"{v['pct']}% of {v['x']}")]


def _split_bill(rng):
    v = {"n": rng.randint(2, 8), "total": rng.randrange(30, 400, 5), "pct": rng.choice([10, 15, 18, 20])}
    return v, [
        _tool(f"What is {v['total']} plus a {v['pct']}% tip?", "calculator", expression=f"{v['total']} + {v['pct']}%"),
        _tool(f"What is {{1}} divided by {v['n']}?", "calculator", expression=f"{{1}} / {v['n']}"),
    ]


def _speed(rng):
    v = {"d": rng.randrange(60, 900, 15), "h": rng.randint(2, 9), "vehicle": rng.choice(["train", "car", "bus"])}
    return v, [
        _tool(f"What is {v['d']} km divided by {v['h']} hours?", "calculator", expression=f"{v['d']} / {v['h']}")
    ]


def _average(rng):
    v = {"a": rng.randint(1, 99), "b": rng.randint(1, 99), "c": rng.randint(1, 99)}
    return v, [
        _tool(
            f"What is the average of {v['a']}, {v['b']} and {v['c']}?",
            "calculator",
            expression=f"({v['a']} + {v['b']} + {v['c']}) / 3",
        )
    ]


def _rectangle(rng):
    v = {"w": rng.randint(2, 40), "l": rng.randint(2, 60), "price": rng.randint(3, 30)}
    return v, [
        _tool(
            f"What is the area of a {v['w']} by {v['l']} metre room?", "calculator", expression=f"{v['w']} * {v['l']}"
        ),
        _tool(
            f"What does {{1}} square metres at {v['price']} dollars cost?",
            "calculator",
            expression=f"{{1}} * {v['price']}",
        ),
    ]


# --- finance ------------------------------------------------------------------------------------------------
def _loan(rng):
    v = {
        "p": _money(rng, 50_000, 600_000, 5_000),
        "r": rng.choice([3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7]),
        "y": rng.choice([10, 15, 20, 25, 30]),
    }
    return v, [
        _tool(
            "What is the monthly payment on the loan?",
            "loan_payment",
            principal=v["p"],
            annual_rate_pct=v["r"],
            n_payments=v["y"] * 12,
        )
    ]


def _schedule(rng):
    v = {"p": _money(rng, 1_000, 40_000, 500), "r": rng.choice([4, 5, 6, 8, 9, 12]), "m": rng.choice([12, 24, 36, 48])}
    return v, [
        _tool(
            "What is the loan's amortization schedule?",
            "amortization_schedule",
            principal=v["p"],
            annual_rate_pct=v["r"],
            n_payments=v["m"],
        )
    ]


def _future_value(rng):
    v = {"p": _money(rng, 1_000, 100_000, 500), "r": rng.choice([2, 3, 4, 5, 6, 7, 8]), "y": rng.randint(2, 30)}
    return v, [
        _tool(
            "What is the investment worth at the end?",
            "future_value",
            present_value=v["p"],
            annual_rate_pct=v["r"],
            years=v["y"],
            compounding_per_year=1,
        )
    ]


def _future_value_converted(rng):
    v, steps = _future_value(rng)
    v["to"] = rng.choice([c for c in CURRENCIES if c != "USD"])
    steps.append(
        _tool(
            f"What is {{1.future_value}} USD in {v['to']}?",
            "currency_convert",
            amount="{1.future_value}",
            from_currency="USD",
            to_currency=v["to"],
        )
    )
    return v, steps


def _present_value(rng):
    v = {"f": _money(rng, 1_000, 200_000, 1_000), "r": rng.choice([3, 4, 5, 6, 8, 10]), "y": rng.randint(1, 25)}
    return v, [
        _tool(
            "What is the amount worth today?",
            "present_value",
            future_value=v["f"],
            annual_rate_pct=v["r"],
            years=v["y"],
        )
    ]


def _flows(rng) -> dict[str, Any]:
    invest = _money(rng, 1_000, 50_000, 500)
    returns = [round(invest * rng.uniform(0.25, 0.5), -1) for _ in range(3)]
    return {"i": invest, "a": int(returns[0]), "b": int(returns[1]), "c": int(returns[2])}


def _npv(rng):
    v = {**_flows(rng), "r": rng.choice([5, 6, 8, 10, 12])}
    return v, [
        _tool(
            "What is the net present value of the cash flows?",
            "npv",
            rate_pct=v["r"],
            cash_flows=[-v["i"], v["a"], v["b"], v["c"]],
        )
    ]


def _irr(rng):
    v = _flows(rng)
    return v, [
        _tool(
            "What is the internal rate of return of the cash flows?",
            "irr",
            cash_flows=[-v["i"], v["a"], v["b"], v["c"]],
        )
    ]


def _cagr(rng):
    start = _money(rng, 1_000, 50_000, 100)
    v = {"s": start, "e": int(start * rng.uniform(1.1, 3.0)), "y": rng.randint(2, 15)}
    return v, [
        _tool("What is the compound annual growth rate?", "cagr", start_value=v["s"], end_value=v["e"], years=v["y"])
    ]


def _percent_change(rng):
    v = {
        "a": rng.randrange(100, 9000, 10),
        "b": rng.randrange(100, 9000, 10),
        "what": rng.choice(["Sales", "Revenue", "Our costs", "The price", "Traffic"]),
    }
    return v, [_tool("What is the percent change?", "percent_change", old_value=v["a"], new_value=v["b"])]


def _convert(rng):
    src, dst = rng.sample(CURRENCIES, 2)
    v = {"amt": _money(rng, 10, 20_000, 10), "src": src, "dst": dst}
    return v, [
        _tool(
            f"What is {v['amt']} {src} in {dst}?",
            "currency_convert",
            amount=v["amt"],
            from_currency=src,
            to_currency=dst,
        )
    ]


def _stock_price(rng):
    v = {"sym": rng.choice(SYMBOLS), "day": _date(rng)}
    return v, [
        _tool(f"What was the close of {v['sym']} on {v['day']}?", "stock_price", symbol=v["sym"], on_date=v["day"])
    ]


def _price_history(rng):
    v = {
        "sym": rng.choice(SYMBOLS),
        "start": f"2023-{rng.randint(1, 6):02d}-01",
        "end": f"2024-{rng.randint(1, 12):02d}-01",
    }
    return v, [
        _tool(
            f"What did {v['sym']} do from {v['start']} to {v['end']}?",
            "price_history",
            symbol=v["sym"],
            start_date=v["start"],
            end_date=v["end"],
        )
    ]


def _portfolio(rng):
    a, b = rng.sample(SYMBOLS, 2)
    v = {"a": a, "b": b}
    return v, [
        _tool(
            f"What are the annual return and volatility of {a} and {b} together?",
            "portfolio_return_and_volatility",
            symbols=[a, b],
        )
    ]


def _price_gap(rng):
    a, b = rng.sample(SYMBOLS, 2)
    v = {"a": a, "b": b, "day": _date(rng)}
    return v, [
        _tool(f"What was the close of {a} on {v['day']}?", "stock_price", symbol=a, on_date=v["day"]),
        _tool(f"What was the close of {b} on {v['day']}?", "stock_price", symbol=b, on_date=v["day"]),
        _tool("What is {1.close} minus {2.close}?", "calculator", expression="{1.close} - {2.close}"),
    ]


# --- customer service ---------------------------------------------------------------------------------------
def _order_status(rng):
    v = {"order": _order(rng)}
    return v, [_tool(f"What is the status of order {v['order']}?", "order_status", order_id=v["order"])]


def _can_return(rng):
    v = {"order": _order(rng), "product": rng.choice(PRODUCTS)}
    return v, [_tool(f"Can order {v['order']} be refunded?", "refund_eligibility", order_id=v["order"])]


def _find_by_email(rng):
    v = {"email": _email(rng)}
    return v, [_tool(f"Who is the customer with email {v['email']}?", "find_customer", email=v["email"])]


def _find_by_name(rng):
    if rng.from_shop():
        name, _, zip_code = rng.choice(demo_customers())
        v = {"name": name, "zip": zip_code}
    else:
        v = {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "zip": f"{rng.randint(10000, 99999)}"}
    return v, [_tool(f"Who is {v['name']} at zip code {v['zip']}?", "find_customer", name=v["name"], zip_code=v["zip"])]


def _orders_of(rng):
    v = {"email": _email(rng)}
    return v, [_tool(f"What orders has {v['email']} placed?", "list_orders", customer=v["email"])]


def _latest_order(rng):
    v = {"email": _email(rng)}
    return v, [
        _tool(f"What orders has {v['email']} placed?", "list_orders", customer=v["email"]),
        _tool("What is the status of order {1.latest_order_id}?", "order_status", order_id="{1.latest_order_id}"),
    ]


def _refund_damaged(rng):
    v = {"order": _order(rng), "product": rng.choice(PRODUCTS)}
    return v, [
        _tool(f"How much was paid for order {v['order']}?", "order_status", order_id=v["order"]),
        _tool(
            f"Refund {{1.paid}} for order {v['order']}.",
            "issue_refund",
            order_id=v["order"],
            amount="{1.paid}",
            reason=f"The {v['product']} arrived broken",
        ),
    ]


def _ticket(rng):
    v = {
        "email": _email(rng),
        "order": _order(rng),
        "problem": rng.choice(
            ["arrived late", "is missing an item", "was delivered to the wrong address", "has not arrived"]
        ),
    }
    return v, [
        _tool(
            f"Open a ticket: order {v['order']} {v['problem']}.",
            "open_ticket",
            customer=v["email"],
            subject=f"Order {v['order']} {v['problem']}",
            body=f"The customer reports that order {v['order']} {v['problem']}.",
            order_id=v["order"],
        )
    ]


def _policy(rng):
    topic = rng.choice(
        [
            ("return damaged items", "damaged items"),
            ("return window days", "returns"),
            ("shipping times", "shipping"),
            ("refund payment method", "refunds"),
        ]
    )
    v = {"topic": topic[1]}
    return v, [_tool(f"What does the policy say about {topic[1]}?", "search_policy", query=topic[0])]


def _latest_returnable(rng):
    v = {"email": _email(rng)}
    return v, [
        _tool(f"What orders has {v['email']} placed?", "list_orders", customer=v["email"]),
        _tool("Can order {1.latest_order_id} be refunded?", "refund_eligibility", order_id="{1.latest_order_id}"),
    ]


TEMPLATES: tuple[Template, ...] = (
    Template(
        "total_cost",
        "calculator",
        (
            "{name} buys {n} {item} at {price} dollars each. How much does {name} pay?",
            "How much do {n} {item} cost if one costs ${price}?",
            "One of the {item} costs {price} dollars. What do {n} of them cost?",
        ),
        _total_cost,
    ),
    Template(
        "change",
        "calculator",
        (
            "{name} buys {n} {item} at {price} dollars each and pays with a {bill} dollar bill. How much change?",
            "The {item} cost ${price} each. {name} buys {n} and pays ${bill}. What change does {name} get back?",
        ),
        _change,
    ),
    Template(
        "percent_of",
        "calculator",
        ("What is {pct}% of {x}?", "Calculate {pct} percent of {x}.", "How much is {pct}% of {x} dollars?"),
        _percent_of,
    ),
    Template(
        "split_bill",
        "calculator",
        (
            "{n} friends split a {total} dollar bill plus a {pct}% tip equally. How much does each pay?",
            "A dinner costs ${total}; with a {pct}% tip, what does each of {n} people pay?",
        ),
        _split_bill,
    ),
    Template(
        "speed",
        "calculator",
        (
            "A {vehicle} travels {d} km in {h} hours. What is its average speed?",
            "What is the average speed of a {vehicle} that covers {d} km in {h} hours?",
        ),
        _speed,
    ),
    Template(
        "average",
        "calculator",
        ("What is the average of {a}, {b} and {c}?", "Find the mean of {a}, {b} and {c}."),
        _average,
        held_out=True,
    ),
    Template(
        "rectangle",
        "calculator",
        (
            "A room is {w} m by {l} m. Flooring costs {price} dollars per square metre. What does it cost?",
            "How much to carpet a {w} by {l} metre room at ${price} a square metre?",
        ),
        _rectangle,
        held_out=True,
    ),
    Template(
        "loan",
        "finance",
        (
            "What is the monthly payment on a {p} USD loan at {r}% over {y} years?",
            "I borrow ${p} for {y} years at {r}% interest. What is my monthly payment?",
            "Monthly payment and total interest of a {y}-year mortgage of {p} at {r}%?",
        ),
        _loan,
    ),
    Template(
        "schedule",
        "finance",
        (
            "Show the amortization schedule of a {p} loan at {r}% over {m} months.",
            "How is a {m}-month loan of ${p} at {r}% paid off, month by month?",
        ),
        _schedule,
    ),
    Template(
        "future_value",
        "finance",
        (
            "If I invest {p} at {r}% a year for {y} years, what is it worth?",
            "What will ${p} grow to in {y} years at {r}% compounded yearly?",
            "How much is {p} worth after {y} years growing {r}% annually?",
        ),
        _future_value,
    ),
    Template(
        "present_value",
        "finance",
        (
            "What is {f} received in {y} years worth today at a {r}% discount rate?",
            "How much is ${f} due in {y} years worth now, discounting at {r}%?",
        ),
        _present_value,
    ),
    Template(
        "npv",
        "finance",
        (
            "What is the NPV at {r}% of investing {i} now for returns of {a}, {b} and {c} over three years?",
            "I pay ${i} today and get {a}, {b} and {c} in the next three years. What is the NPV at {r}%?",
        ),
        _npv,
    ),
    Template(
        "irr",
        "finance",
        (
            "What is the IRR of paying {i} now and getting back {a}, {b} and {c} over three years?",
            "An investment of ${i} returns {a}, {b} and {c}. What is its internal rate of return?",
        ),
        _irr,
    ),
    Template(
        "cagr",
        "finance",
        (
            "A fund grew from {s} to {e} in {y} years. What was its compound annual growth rate?",
            "What is the CAGR of going from ${s} to ${e} over {y} years?",
        ),
        _cagr,
    ),
    Template(
        "percent_change",
        "finance",
        ("{what} went from {a} to {b}. By what percent did it change?", "What is the percent change from {a} to {b}?"),
        _percent_change,
    ),
    Template(
        "convert",
        "finance",
        (
            "Convert {amt} {src} to {dst}.",
            "How much is {amt} {src} in {dst}?",
            "What do I get for {amt} {src} in {dst}?",
        ),
        _convert,
    ),
    Template(
        "stock_price",
        "finance",
        ("What was the closing price of {sym} on {day}?", "How much did {sym} close at on {day}?"),
        _stock_price,
    ),
    Template(
        "price_history",
        "finance",
        ("How did {sym} move between {start} and {end}?", "Show the closing prices of {sym} from {start} to {end}."),
        _price_history,
    ),
    Template(
        "portfolio",
        "finance",
        (
            "What are the annual return and volatility of a portfolio of {a} and {b}?",
            "How risky is an equal mix of {a} and {b}, and what does it return a year?",
        ),
        _portfolio,
    ),
    Template(
        "future_value_converted",
        "finance",
        (
            "If I invest {p} USD at {r}% a year for {y} years, what is it worth in {to}?",
            "What will ${p} grow to in {y} years at {r}% yearly, in {to}?",
        ),
        _future_value_converted,
        held_out=True,
    ),
    Template(
        "price_gap",
        "finance",
        (
            "How much higher did {a} close than {b} on {day}?",
            "What was the difference between the closes of {a} and {b} on {day}?",
        ),
        _price_gap,
        held_out=True,
    ),
    Template(
        "order_status",
        "customer-service",
        ("Where is my order {order}?", "What's the status of order {order}?", "Has order {order} shipped yet?"),
        _order_status,
    ),
    Template(
        "can_return",
        "customer-service",
        (
            "Can I still return order {order}?",
            "Is order {order} eligible for a refund?",
            "I want to send back the {product} from order {order}. Is that possible?",
        ),
        _can_return,
    ),
    Template(
        "find_by_email",
        "customer-service",
        ("Look up the customer with email {email}.", "Which customer is {email}?"),
        _find_by_email,
    ),
    Template(
        "find_by_name",
        "customer-service",
        ("Find the customer {name}, zip code {zip}.", "I'm {name}, my zip is {zip}. Can you find my account?"),
        _find_by_name,
    ),
    Template(
        "orders_of",
        "customer-service",
        ("What orders has {email} placed?", "List the orders of {email}.", "Show me my orders, I'm {email}."),
        _orders_of,
    ),
    Template(
        "latest_order",
        "customer-service",
        ("I'm {email}. Where is my latest order?", "What's the status of the last order of {email}?"),
        _latest_order,
    ),
    Template(
        "refund_damaged",
        "customer-service",
        (
            "Please refund order {order}: the {product} arrived broken.",
            "The {product} in order {order} was damaged. I want my money back.",
        ),
        _refund_damaged,
    ),
    Template(
        "ticket",
        "customer-service",
        (
            "I'm {email}. My order {order} {problem}. Please open a ticket.",
            "Open a support ticket for {email}: order {order} {problem}.",
        ),
        _ticket,
    ),
    Template(
        "policy", "customer-service", ("What is your policy on {topic}?", "Tell me the rules for {topic}."), _policy
    ),
    Template(
        "latest_returnable",
        "customer-service",
        ("I'm {email}. Can I still return my latest order?", "Is the most recent order of {email} still refundable?"),
        _latest_returnable,
        held_out=True,
    ),
)


def synthetic_examples(
    per_template: int, *, held_out: bool = False, seed: int = 0, shop_share: float = 0.5
) -> Iterator[Example]:
    """`per_template` examples from each training template (or, with `held_out`, each held-out one);
    `shop_share`: see `Draws`."""
    rng = Draws(seed, shop_share)
    for template in TEMPLATES:
        if template.held_out == held_out:
            for _ in range(per_template):
                yield template.example(rng)
