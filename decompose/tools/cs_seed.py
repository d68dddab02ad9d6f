"""The demo shop behind the customer-service tools: its schema, its customers and orders (dated relative to the
day the database is seeded, so every policy case stays reachable), and its policy texts."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta

RETURN_WINDOW_DAYS = 30
DAMAGED_WINDOW_DAYS = 90

POLICY = [
    (
        "Refund window",
        f"Delivered orders can be refunded within {RETURN_WINDOW_DAYS} days of the delivery date "
        f"(day {RETURN_WINDOW_DAYS} included). The return window starts on the delivery date, not the order date.",
    ),
    (
        "Damaged or defective items",
        f"If an item arrived damaged or defective, the refund window is "
        f"{DAMAGED_WINDOW_DAYS} days from delivery and the item does not need to be unused. Report the damage "
        "in a support ticket, with photos if possible.",
    ),
    (
        "Condition of returned items",
        "Items that are not damaged must be returned unused, in their original packaging, to be refunded.",
    ),
    (
        "Refund amount",
        "A refund never exceeds the amount paid for the order minus earlier refunds. Partial "
        "refunds are allowed. Orders that are already fully refunded cannot be refunded again.",
    ),
    (
        "Orders not yet delivered",
        "An order that is still processing can be cancelled instead of refunded: open a "
        "support ticket. An order in transit can be refunded once it has been delivered.",
    ),
    (
        "Cancelled orders",
        "The payment for a cancelled order is voided and never captured, so there is nothing to refund.",
    ),
    ("Refund timing", "Refunds go back to the original payment method and appear within 5 to 10 business days."),
    (
        "Shipping and tracking",
        "Orders ship within 2 business days. Each shipment has a carrier and a tracking "
        "number; the estimated delivery date (ETA) is updated when the carrier scans the parcel.",
    ),
    (
        "Contacting support",
        "Open a support ticket for damaged items, cancellations, delivery problems or any "
        "question this policy does not answer. Tickets are answered within one business day.",
    ),
]

SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE,
       zip_code TEXT NOT NULL)""",
    """CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
       placed_on TEXT NOT NULL, status TEXT NOT NULL
       CHECK (status IN ('processing', 'shipped', 'delivered', 'cancelled')))""",
    """CREATE TABLE order_items (order_id TEXT NOT NULL REFERENCES orders(id), sku TEXT NOT NULL,
       description TEXT NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0),
       unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0), damaged INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE shipments (order_id TEXT PRIMARY KEY REFERENCES orders(id), carrier TEXT NOT NULL,
       tracking_number TEXT NOT NULL, shipped_on TEXT NOT NULL, eta TEXT, delivered_on TEXT)""",
    """CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id),
       amount_cents INTEGER NOT NULL CHECK (amount_cents > 0), method TEXT NOT NULL, paid_on TEXT NOT NULL)""",
    """CREATE TABLE refunds (id INTEGER PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(id),
       amount_cents INTEGER NOT NULL CHECK (amount_cents > 0), reason TEXT NOT NULL, refunded_on TEXT NOT NULL,
       idempotency_key TEXT NOT NULL UNIQUE)""",
    """CREATE TABLE tickets (id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(id),
       order_id TEXT REFERENCES orders(id), subject TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
       opened_on TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE)""",
    """CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, tool TEXT NOT NULL, result_json TEXT NOT NULL)""",
    "CREATE TABLE policy (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, body TEXT NOT NULL)",
]

_CUSTOMERS = [
    ("C001", "Ann Lee", "ann@example.com", "94107"),
    ("C002", "Bob Martin", "bob@example.com", "10001"),
    ("C003", "Carla Diaz", "carla@example.com", "60601"),
    ("C004", "Dev Patel", "dev@example.com", "73301"),
    ("C005", "Erin Walsh", "erin@example.com", "98101"),
    ("C006", "Farid Haddad", "farid@example.com", "02139"),
    ("C007", "Grace Kim", "grace@example.com", "30301"),
    ("C008", "Hugo Moreau", "hugo@example.com", "94107"),
    ("C009", "Ivy Chen", "ivy@example.com", "10001"),
    ("C010", "Jon Berg", "jon@example.com", "60601"),
    ("C011", "Ann Lee", "ann.lee@example.com", "73301"),  # same name as C001: why look-ups by name need a zip
]

# (order, customer, status, placed, delivered, items, refunded cents); days are offsets from the seed date.
# Items are (sku, description, quantity, unit price cents[, damaged]).
_ORDERS: list[tuple[str, str, str, int, int | None, list[tuple], int]] = [
    ("A1001", "C001", "delivered", -12, -7, [("KET-01", "Electric kettle", 1, 4999)], 0),
    ("A1002", "C001", "delivered", -80, -75, [("HP-200", "Wireless headphones", 1, 8900)], 0),
    ("A1003", "C001", "shipped", -3, None, [("MUG-04", "Ceramic mug", 4, 1250)], 0),
    ("A1004", "C002", "processing", -1, None, [("LMP-11", "Desk lamp", 1, 3400)], 0),
    ("A1005", "C002", "cancelled", -9, None, [("BAG-07", "Canvas tote bag", 2, 1800)], 0),
    ("A1006", "C002", "delivered", -25, -20, [("SPK-03", "Bluetooth speaker", 1, 5900)], 5900),
    ("A1007", "C003", "delivered", -14, -10, [("CHR-02", "Office chair", 1, 12000)], 3000),
    (
        "A1008",
        "C003",
        "delivered",
        -50,
        -45,
        [("VAS-09", "Glass vase", 1, 3900, 1), ("FLW-01", "Dried flowers", 1, 1500)],
        0,
    ),
    ("A1009", "C004", "delivered", -34, -30, [("BK-101", "Hardcover notebook", 3, 1500)], 0),
    ("A1010", "C004", "delivered", -35, -31, [("PEN-05", "Fountain pen", 1, 6500)], 0),
    ("A1011", "C004", "shipped", -2, None, [("INK-02", "Ink cartridges", 2, 900)], 0),
    ("A1012", "C005", "delivered", -105, -100, [("PLT-12", "Dinner plates (set)", 1, 7500, 1)], 0),
    ("A1013", "C005", "delivered", -5, -2, [("TWL-03", "Bath towel", 2, 2200), ("SOP-01", "Olive soap", 3, 450)], 0),
    ("A1014", "C006", "processing", 0, None, [("KB-60", "Mechanical keyboard", 1, 11900)], 0),
    ("A1015", "C006", "delivered", -19, -15, [("MS-02", "Wireless mouse", 1, 2999)], 0),
    ("A1016", "C007", "shipped", -4, None, [("YGM-01", "Yoga mat", 1, 3500)], 0),
    ("A1017", "C007", "delivered", -205, -200, [("BTL-02", "Water bottle", 2, 1600)], 0),
    ("A1018", "C008", "delivered", -8, -5, [("JKT-44", "Rain jacket", 1, 9900)], 0),
    ("A1019", "C008", "cancelled", -6, None, [("UMB-01", "Umbrella", 1, 2500)], 0),
    (
        "A1020",
        "C009",
        "delivered",
        -29,
        -25,
        [("HDR-01", "Hair dryer", 1, 4500), ("BRS-02", "Hair brush", 1, 1500)],
        1500,
    ),
    ("A1021", "C009", "shipped", -1, None, [("CBL-03", "USB-C cable", 3, 999)], 0),
    ("A1022", "C009", "delivered", -4, -1, [("PLW-02", "Pillow", 2, 2750)], 0),
    ("A1023", "C010", "delivered", -66, -60, [("TNT-02", "Camping tent", 1, 18900)], 0),
    ("A1024", "C010", "processing", -1, None, [("STV-01", "Camping stove", 1, 6400)], 0),
    ("A1025", "C010", "delivered", -6, -3, [("LNT-05", "Head torch", 1, 2450)], 0),
]
_CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]


def demo_customers() -> list[tuple[str, str, str]]:
    """(name, email, zip code) of each demo customer: what synthetic training questions can ask about."""
    return [(name, email, zip_code) for _, name, email, zip_code in _CUSTOMERS]


def demo_order_ids() -> list[str]:
    return [order[0] for order in _ORDERS]


def seed(conn: sqlite3.Connection, today: date) -> None:
    def day(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    conn.execute("INSERT INTO meta VALUES ('seeded_on', ?)", (today.isoformat(),))
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", _CUSTOMERS)
    conn.executemany("INSERT INTO policy (topic, body) VALUES (?, ?)", POLICY)
    for n, (oid, cid, status, placed, delivered, items, refunded) in enumerate(_ORDERS):
        conn.execute("INSERT INTO orders VALUES (?, ?, ?, ?)", (oid, cid, day(placed), status))
        conn.executemany(
            "INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)",
            [(oid, *item[:4], item[4] if len(item) > 4 else 0) for item in items],
        )
        total = sum(qty * price for _, _, qty, price, *_ in items)
        if status != "cancelled":  # cancelled orders had their payment voided
            conn.execute(
                "INSERT INTO payments (order_id, amount_cents, method, paid_on) VALUES (?, ?, ?, ?)",
                (oid, total, "card", day(placed)),
            )
        if status in ("shipped", "delivered"):
            carrier = _CARRIERS[n % len(_CARRIERS)]
            eta = day(delivered) if delivered is not None else day(placed + 5)
            conn.execute(
                "INSERT INTO shipments VALUES (?, ?, ?, ?, ?, ?)",
                (
                    oid,
                    carrier,
                    f"{carrier[:2].upper()}{9_400_100 + n * 7_919:010d}",
                    day(placed + 1),
                    eta,
                    day(delivered) if delivered is not None else None,
                ),
            )
        if refunded:
            assert delivered is not None, f"seed order {oid} is refunded but was never delivered"
            conn.execute(
                "INSERT INTO refunds (order_id, amount_cents, reason, refunded_on, idempotency_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (oid, refunded, "customer return", day(delivered + 2), f"seed-{oid}"),
            )
    conn.execute(
        "INSERT INTO tickets (customer_id, order_id, subject, body, status, opened_on, idempotency_key) "
        "VALUES ('C003', 'A1008', 'Vase arrived broken', 'The glass vase was cracked in the box.', "
        "'open', ?, 'seed-ticket-1')",
        (day(-44),),
    )
