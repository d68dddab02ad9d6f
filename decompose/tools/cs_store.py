"""The customer-service store: one SQLite file with a demo shop (customers, orders, shipments, payments,
refunds, tickets, policy), seeded on first use, and the refund policy enforced in code.

Money is kept as integer cents in the database and returned as strings with two decimals ("49.99").
Writes that must happen at most once (refunds, tickets) record their idempotency key in the same
`BEGIN IMMEDIATE` transaction as the write; the key is the primary key of `idempotency_keys`, so a repeated
call finds the stored result instead of writing again, even from another process.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from decompose.errors import ToolError
from decompose.paths import cache_dir
from decompose.tools.cs_seed import DAMAGED_WINDOW_DAYS, RETURN_WINDOW_DAYS, SCHEMA, seed

MAX_POLICY_HITS = 20

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def default_db_path() -> Path:
    """`customer_service.sqlite3` in the cache folder (`decompose.paths.cache_dir`)."""
    return cache_dir() / "customer_service.sqlite3"


def money(cents: int) -> str:
    return str(Decimal(cents).scaleb(-2))


def to_cents(amount, what: str = "amount") -> int:
    """A positive amount with at most two decimals, as integer cents."""
    try:
        value = Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        raise ToolError(f"{what} '{amount}' is not a number", hint="pass an amount like 19.99") from None
    if not value.is_finite() or value <= 0:
        raise ToolError(f"{what} must be positive, got '{amount}'", hint="pass an amount like 19.99")
    if value != value.quantize(Decimal("0.01")):
        raise ToolError(f"{what} '{amount}' has more than two decimals", hint="round it to cents")
    return int(value * 100)


class Store:
    """One customer-service database. Every call opens its own connection, so a Store is thread-safe."""

    def __init__(self, path: str | Path | None = None, today: date | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self._today = today
        self._policy: tuple[dict[str, str], Any] | None = None  # (bodies by topic, their retriever), built on use
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ToolError(f"cannot create directory for '{self.path}': {err.strerror}") from None
        with self.transaction(write=True) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                for statement in SCHEMA:
                    conn.execute(statement)
                seed(conn, self.today())

    def today(self) -> date:
        return self._today or date.today()

    @contextmanager
    def transaction(self, write: bool = False):
        """A transaction; `write=True` takes the write lock up front (BEGIN IMMEDIATE), so a read-check-write
        sequence cannot interleave with another writer."""
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as err:
            raise ToolError(f"cannot open customer-service database '{self.path}': {err}") from None
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            raise ToolError(
                f"customer-service database error: {err}",
                hint=f"check that '{self.path}' is a decompose customer-service database",
            ) from None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    # -- look-ups -----------------------------------------------------------------------------------------

    def _customer(self, conn, customer: str) -> sqlite3.Row:
        key = (customer or "").strip()
        if not key:
            raise ToolError("customer is empty", hint="pass a customer id like C001 or an email")
        if "@" in key:
            row = conn.execute("SELECT * FROM customers WHERE email = ?", (key.lower(),)).fetchone()
        else:
            row = conn.execute("SELECT * FROM customers WHERE id = ?", (key.upper(),)).fetchone()
        if row is None:
            raise ToolError(f"customer '{customer}' not found", hint="use find_customer to get the customer id")
        return row

    def _order(self, conn, order_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM orders WHERE id = ?", ((order_id or "").strip().upper(),)).fetchone()
        if row is None:
            raise ToolError(f"order '{order_id}' not found", hint="use list_orders to see a customer's orders")
        return row

    def find_customer(self, email: str | None, name: str | None, zip_code: str | None) -> dict:
        with self.transaction() as conn:
            if email:
                email = email.strip().lower()
                if not _EMAIL.fullmatch(email):
                    raise ToolError(f"'{email}' is not a valid email address", hint="e.g. ann@example.com")
                row = conn.execute("SELECT * FROM customers WHERE email = ?", (email,)).fetchone()
                wanted = f"email '{email}'"
            elif name and name.strip() and zip_code and zip_code.strip():
                row = conn.execute(
                    "SELECT * FROM customers WHERE lower(name) = ? AND zip_code = ?",
                    (" ".join(name.lower().split()), zip_code.strip()),
                ).fetchone()
                wanted = f"name '{name}' and zip code '{zip_code}'"
            else:
                raise ToolError(
                    "find_customer needs an email, or a name together with a zip code",
                    hint="names are not unique, so a name alone is not enough",
                )
            if row is None:
                raise ToolError(f"no customer with {wanted}")
            count = conn.execute("SELECT count(*) FROM orders WHERE customer_id = ?", (row["id"],)).fetchone()[0]
        return {
            "customer_id": row["id"],
            "name": row["name"],
            "email": row["email"],
            "zip_code": row["zip_code"],
            "order_count": count,
        }

    def list_orders(self, customer: str) -> dict:
        with self.transaction() as conn:
            cust = self._customer(conn, customer)
            orders = []
            for o in conn.execute(
                "SELECT * FROM orders WHERE customer_id = ? ORDER BY placed_on DESC, id DESC", (cust["id"],)
            ).fetchall():
                items = conn.execute(
                    "SELECT description, quantity, unit_price_cents FROM order_items WHERE order_id = ?", (o["id"],)
                ).fetchall()
                orders.append(
                    {
                        "order_id": o["id"],
                        "placed_on": o["placed_on"],
                        "status": o["status"],
                        "total": money(sum(i["quantity"] * i["unit_price_cents"] for i in items)),
                        "items": [f"{i['description']} x{i['quantity']}" for i in items],
                    }
                )
        return {
            "customer_id": cust["id"],
            "name": cust["name"],
            "orders": orders,
            "latest_order_id": orders[0]["order_id"] if orders else None,
        }

    def _amounts(self, conn, order_id: str) -> tuple[int, int]:
        paid = conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM payments WHERE order_id = ?", (order_id,)
        ).fetchone()[0]
        refunded = conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchone()[0]
        return paid, refunded

    def order_status(self, order_id: str) -> dict:
        with self.transaction() as conn:
            order = self._order(conn, order_id)
            ship = conn.execute("SELECT * FROM shipments WHERE order_id = ?", (order["id"],)).fetchone()
            items = conn.execute("SELECT * FROM order_items WHERE order_id = ?", (order["id"],)).fetchall()
            paid, refunded = self._amounts(conn, order["id"])
        return {
            "order_id": order["id"],
            "customer_id": order["customer_id"],
            "status": order["status"],
            "placed_on": order["placed_on"],
            "carrier": ship["carrier"] if ship else None,
            "tracking_number": ship["tracking_number"] if ship else None,
            "shipped_on": ship["shipped_on"] if ship else None,
            "eta": ship["eta"] if ship and not ship["delivered_on"] else None,
            "delivered_on": ship["delivered_on"] if ship else None,
            "items": [
                {
                    "sku": i["sku"],
                    "description": i["description"],
                    "quantity": i["quantity"],
                    "unit_price": money(i["unit_price_cents"]),
                    "damaged": bool(i["damaged"]),
                }
                for i in items
            ],
            "paid": money(paid),
            "refunded": money(refunded),
        }

    # -- refunds --------------------------------------------------------------------------------------------

    def _eligibility(self, conn, order: sqlite3.Row) -> dict:
        paid, refunded = self._amounts(conn, order["id"])
        remaining = max(paid - refunded, 0)
        result = {
            "order_id": order["id"],
            "eligible": False,
            "reason": "",
            "paid": money(paid),
            "refunded": money(refunded),
            "max_refundable": money(0),
            "delivered_on": None,
            "window_ends": None,
        }
        status = order["status"]
        if status == "processing":
            result["reason"] = "order is still processing; it can be cancelled instead (open a ticket)"
            return result
        if status == "shipped":
            result["reason"] = "order is in transit; it can be refunded once it has been delivered"
            return result
        if status == "cancelled":
            result["reason"] = "order was cancelled and its payment voided; there is nothing to refund"
            return result
        delivered = date.fromisoformat(
            conn.execute("SELECT delivered_on FROM shipments WHERE order_id = ?", (order["id"],)).fetchone()[0]
        )
        damaged = (
            conn.execute("SELECT 1 FROM order_items WHERE order_id = ? AND damaged = 1", (order["id"],)).fetchone()
            is not None
        )
        window = DAMAGED_WINDOW_DAYS if damaged else RETURN_WINDOW_DAYS
        age = (self.today() - delivered).days
        result["delivered_on"] = delivered.isoformat()
        result["window_ends"] = (delivered + timedelta(days=window)).isoformat()
        kind = f"the {window}-day window for damaged items" if damaged else f"the {window}-day return window"
        if remaining == 0:
            result["reason"] = f"order is already fully refunded ({money(refunded)} of {money(paid)})"
        elif age > window:
            result["reason"] = f"delivered {age} days ago, outside {kind}"
        else:
            result.update(
                eligible=True,
                max_refundable=money(remaining),
                reason=f"delivered {age} days ago, within {kind}; {money(remaining)} still refundable",
            )
        return result

    def refund_eligibility(self, order_id: str) -> dict:
        with self.transaction() as conn:
            return self._eligibility(conn, self._order(conn, order_id))

    @staticmethod
    def _replay(conn, key: str, tool: str) -> dict | None:
        if not key or not key.strip():
            raise ToolError("idempotency_key is empty", hint="the orchestrator injects one per run and step")
        row = conn.execute("SELECT tool, result_json FROM idempotency_keys WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row["tool"] != tool:
            raise ToolError(f"idempotency key '{key}' was already used by {row['tool']}")
        return json.loads(row["result_json"])

    @staticmethod
    def _remember(conn, key: str, tool: str, result: dict) -> dict:
        conn.execute("INSERT INTO idempotency_keys VALUES (?, ?, ?)", (key, tool, json.dumps(result)))
        return result

    def issue_refund(self, order_id: str, amount, reason: str, idempotency_key: str) -> dict:
        reason = (reason or "").strip()
        if not reason or len(reason) > 500:
            raise ToolError("refund reason must be 1 to 500 characters", hint="say why the customer is refunded")
        with self.transaction(write=True) as conn:
            if (done := self._replay(conn, idempotency_key, "issue_refund")) is not None:
                return done
            order = self._order(conn, order_id)
            # The policy is checked here, inside the write lock, whatever an earlier step concluded.
            check = self._eligibility(conn, order)
            if not check["eligible"]:
                raise ToolError(f"refund refused for order '{order['id']}': {check['reason']}")
            # After the policy: an ineligible order is refused for its reason, whatever the sum.
            cents = to_cents(amount)
            remaining = to_cents(check["max_refundable"])
            if cents > remaining:
                raise ToolError(
                    f"refund of {money(cents)} exceeds the {check['max_refundable']} still "
                    f"refundable on order '{order['id']}'",
                    hint="refund at most max_refundable",
                )
            cur = conn.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, refunded_on, idempotency_key)"
                " VALUES (?, ?, ?, ?, ?)",
                (order["id"], cents, reason, self.today().isoformat(), idempotency_key),
            )
            paid, refunded = self._amounts(conn, order["id"])
            result = {
                "refund_id": f"R{cur.lastrowid:05d}",
                "order_id": order["id"],
                "amount": money(cents),
                "refunded_total": money(refunded),
                "remaining_refundable": money(paid - refunded),
                "refunded_on": self.today().isoformat(),
                "status": "refunded",
            }
            return self._remember(conn, idempotency_key, "issue_refund", result)

    # -- tickets and policy -----------------------------------------------------------------------------------

    def open_ticket(self, customer: str, subject: str, body: str, order_id: str | None, idempotency_key: str) -> dict:
        subject, body = (subject or "").strip(), (body or "").strip()
        if not subject or len(subject) > 200:
            raise ToolError("ticket subject must be 1 to 200 characters")
        if not body or len(body) > 5000:
            raise ToolError("ticket body must be 1 to 5000 characters")
        with self.transaction(write=True) as conn:
            if (done := self._replay(conn, idempotency_key, "open_ticket")) is not None:
                return done
            cust = self._customer(conn, customer)
            if order_id:
                order = self._order(conn, order_id)
                if order["customer_id"] != cust["id"]:
                    raise ToolError(f"order '{order['id']}' does not belong to customer '{cust['id']}'")
                order_id = order["id"]
            cur = conn.execute(
                "INSERT INTO tickets (customer_id, order_id, subject, body, status, opened_on, "
                "idempotency_key) VALUES (?, ?, ?, ?, 'open', ?, ?)",
                (cust["id"], order_id or None, subject, body, self.today().isoformat(), idempotency_key),
            )
            result = {
                "ticket_id": f"T{cur.lastrowid:05d}",
                "customer_id": cust["id"],
                "order_id": order_id or None,
                "subject": subject,
                "status": "open",
                "opened_on": self.today().isoformat(),
            }
            return self._remember(conn, idempotency_key, "open_ticket", result)

    def search_policy(self, query: str, limit: int = 3) -> list[dict]:
        """BM25 over the policy paragraphs: the same retriever `--docs` uses."""
        from decompose.retrieval import LocalDocsRetriever, query_terms

        if not query_terms(query or ""):
            raise ToolError(f"policy query '{query}' has no searchable words", hint="e.g. 'refund damaged item'")
        if not 1 <= limit <= MAX_POLICY_HITS:
            raise ToolError(f"limit must be between 1 and {MAX_POLICY_HITS}, got {limit}")
        if self._policy is None:  # the policy is seeded once: index it once per store
            with self.transaction() as conn:
                rows = conn.execute("SELECT topic, body FROM policy ORDER BY id").fetchall()
            bodies = {row["topic"]: row["body"] for row in rows}
            # The topic is part of the passage: topics say what a paragraph is about.
            self._policy = (
                bodies,
                LocalDocsRetriever.from_texts([(t, f"{t}. {b}") for t, b in bodies.items()], k=MAX_POLICY_HITS),
            )
        bodies, retriever = self._policy
        return [
            {"topic": d.metadata["id"], "text": bodies[d.metadata["id"]], "score": d.metadata["score"]}
            for d in retriever.invoke(query)[:limit]
        ]
