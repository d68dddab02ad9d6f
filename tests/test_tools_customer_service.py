import sqlite3
import threading
from datetime import date

import pytest
from pydantic import ValidationError

from decompose.errors import ToolError
from decompose.tools.customer_service import customer_service_tools, default_db_path

TODAY = date(2025, 3, 15)


def make_tools(path, today=TODAY):
    return {t.name: t for t in customer_service_tools(path, today=today)}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "cs.sqlite3"


@pytest.fixture
def tools(db):
    return make_tools(db)


def rows(db, sql, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def refund(tools, order_id, amount, key, reason="customer return"):
    return tools["issue_refund"].invoke(
        {"order_id": order_id, "amount": amount, "reason": reason, "idempotency_key": key}
    )


# -- shape of the pack ------------------------------------------------------------------------------------------


def test_pack_shape(tools):
    assert set(tools) == {
        "find_customer",
        "list_orders",
        "order_status",
        "refund_eligibility",
        "issue_refund",
        "open_ticket",
        "search_policy",
    }
    for name, t in tools.items():
        assert t.description
        side_effects = name in ("issue_refund", "open_ticket")
        assert bool((t.metadata or {}).get("side_effects")) is side_effects
        schema = t.tool_call_schema.model_json_schema()
        assert "idempotency_key" not in schema["properties"]  # injected by the orchestrator, never by the model
        assert all(p.get("description") for p in schema["properties"].values())


def test_default_path_respects_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_db_path() == tmp_path / "cache" / "decompose" / "customer_service.sqlite3"
    customer_service_tools(today=TODAY)
    assert default_db_path().exists()


def test_seeded_once_and_deterministic(db, tmp_path):
    make_tools(db)
    make_tools(db)  # a second pack on the same file does not seed again
    assert rows(db, "SELECT count(*) FROM customers")[0][0] == 11
    assert rows(db, "SELECT count(*) FROM orders")[0][0] == 25
    other = tmp_path / "other.sqlite3"
    make_tools(other)
    dump = "SELECT * FROM orders JOIN shipments ON shipments.order_id = orders.id ORDER BY orders.id"
    assert rows(db, dump) == rows(other, dump)


def test_two_stores_do_not_interfere(tmp_path):
    a, b = make_tools(tmp_path / "a.sqlite3"), make_tools(tmp_path / "b.sqlite3")
    refund(a, "A1001", "49.99", "k1")
    assert b["refund_eligibility"].invoke({"order_id": "A1001"})["max_refundable"] == "49.99"
    assert a["refund_eligibility"].invoke({"order_id": "A1001"})["eligible"] is False


# -- look-ups ---------------------------------------------------------------------------------------------------


def test_find_customer(tools):
    by_email = tools["find_customer"].invoke({"email": " Ann@Example.com "})
    assert by_email == {
        "customer_id": "C001",
        "name": "Ann Lee",
        "email": "ann@example.com",
        "zip_code": "94107",
        "order_count": 3,
    }
    by_name = tools["find_customer"].invoke({"name": "ann  lee", "zip_code": "73301"})
    assert by_name["customer_id"] == "C011"


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "needs an email, or a name together with a zip code"),
        ({"name": "Ann Lee"}, "needs an email"),
        ({"email": "not-an-email"}, "not a valid email"),
        ({"email": "nobody@example.com"}, "no customer with email 'nobody@example.com'"),
        ({"name": "Ann Lee", "zip_code": "00000"}, "no customer with name"),
    ],
)
def test_find_customer_bad_input(tools, args, message):
    with pytest.raises(ToolError, match=message):
        tools["find_customer"].invoke(args)


def test_list_orders(tools, db):
    result = tools["list_orders"].invoke({"customer": "ann@example.com"})
    assert [o["order_id"] for o in result["orders"]] == ["A1003", "A1001", "A1002"]
    assert result["latest_order_id"] == "A1003"
    kettle = result["orders"][1]
    assert kettle == {
        "order_id": "A1001",
        "placed_on": "2025-03-03",
        "status": "delivered",
        "total": "49.99",
        "items": ["Electric kettle x1"],
    }
    assert tools["list_orders"].invoke({"customer": "c011"})["orders"] == []
    with pytest.raises(ToolError, match="customer 'C999' not found"):
        tools["list_orders"].invoke({"customer": "C999"})
    with pytest.raises(ToolError, match="customer is empty"):
        tools["list_orders"].invoke({"customer": " "})


def test_order_status(tools, db):
    shipped = tools["order_status"].invoke({"order_id": "A1003"})
    carrier, tracking, eta = rows(db, "SELECT carrier, tracking_number, eta FROM shipments WHERE order_id='A1003'")[0]
    assert shipped["status"] == "shipped"
    assert (shipped["carrier"], shipped["tracking_number"], shipped["eta"]) == (carrier, tracking, eta)
    assert shipped["delivered_on"] is None and eta > TODAY.isoformat()
    delivered = tools["order_status"].invoke({"order_id": "a1001"})  # ids are case-insensitive
    assert delivered["delivered_on"] == "2025-03-08" and delivered["eta"] is None
    processing = tools["order_status"].invoke({"order_id": "A1004"})
    assert processing["status"] == "processing" and processing["carrier"] is None
    damaged = tools["order_status"].invoke({"order_id": "A1008"})
    assert [i["damaged"] for i in damaged["items"]] == [True, False]


@pytest.mark.parametrize("order_id", ["A9999", "", "1; DROP TABLE orders", "' OR '1'='1"])
def test_unknown_orders(tools, db, order_id):
    for name in ("order_status", "refund_eligibility"):
        with pytest.raises(ToolError, match="not found"):
            tools[name].invoke({"order_id": order_id})
    assert rows(db, "SELECT count(*) FROM orders")[0][0] == 25


# -- refund policy ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order_id, eligible, max_refundable, reason",
    [
        ("A1001", True, "49.99", "within the 30-day return window"),
        ("A1009", True, "45.00", "delivered 30 days ago"),  # the last day of the window counts
        ("A1010", False, "0.00", "delivered 31 days ago, outside the 30-day return window"),
        ("A1002", False, "0.00", "outside the 30-day return window"),
        ("A1003", False, "0.00", "in transit"),
        ("A1004", False, "0.00", "still processing"),
        ("A1005", False, "0.00", "cancelled"),
        ("A1006", False, "0.00", "already fully refunded"),
        ("A1007", True, "90.00", "90.00 still refundable"),  # 120.00 paid, 30.00 refunded before
        ("A1008", True, "54.00", "90-day window for damaged items"),
        ("A1012", False, "0.00", "outside the 90-day window for damaged items"),
    ],
)
def test_refund_eligibility(tools, order_id, eligible, max_refundable, reason):
    result = tools["refund_eligibility"].invoke({"order_id": order_id})
    assert (result["eligible"], result["max_refundable"]) == (eligible, max_refundable)
    assert reason in result["reason"]


def test_today_is_injectable(db):
    make_tools(db)
    later = make_tools(db, today=date(2025, 4, 8))  # A1001 was delivered on 2025-03-08
    assert later["refund_eligibility"].invoke({"order_id": "A1001"})["eligible"] is False


# -- refunds ----------------------------------------------------------------------------------------------------


def test_issue_refund_writes_one_row(tools, db):
    result = refund(tools, "A1007", 40, "run1:step3")
    assert result["amount"] == "40.00" and result["order_id"] == "A1007"
    assert result["refunded_total"] == "70.00" and result["remaining_refundable"] == "50.00"
    assert rows(
        db, "SELECT amount_cents, refunded_on, idempotency_key FROM refunds WHERE order_id='A1007' ORDER BY id"
    ) == [(3000, "2025-03-07", "seed-A1007"), (4000, "2025-03-15", "run1:step3")]
    assert tools["refund_eligibility"].invoke({"order_id": "A1007"})["max_refundable"] == "50.00"


def test_same_key_refunds_once(tools, db):
    first = refund(tools, "A1001", "20.00", "k")
    again = refund(tools, "A1001", "20.00", "k")
    assert again == first
    assert rows(db, "SELECT count(*), sum(amount_cents) FROM refunds WHERE order_id='A1001'") == [(1, 2000)]


def test_crash_between_call_and_record(db):
    # The call succeeded but the orchestrator died before recording it; a new process retries the same step.
    first = refund(make_tools(db), "A1001", "49.99", "run7:step3")
    retried = refund(make_tools(db), "A1001", "49.99", "run7:step3")
    assert retried == first
    assert rows(db, "SELECT count(*) FROM refunds WHERE order_id='A1001'") == [(1,)]


def test_fully_refunded_order_is_refused_with_new_keys(tools, db):
    refund(tools, "A1001", "49.99", "k1")
    with pytest.raises(ToolError, match="already fully refunded"):
        refund(tools, "A1001", "0.01", "k2")
    with pytest.raises(ToolError, match="refund refused for order 'A1006'"):
        refund(tools, "A1006", "1.00", "k3")
    assert rows(db, "SELECT sum(amount_cents) FROM refunds WHERE order_id='A1001'") == [(4999,)]


def test_amount_over_remaining_is_refused(tools, db):
    with pytest.raises(ToolError, match="exceeds the 90.00 still refundable"):
        refund(tools, "A1007", "90.01", "k1")
    refund(tools, "A1007", "60.00", "k2")
    with pytest.raises(ToolError, match="exceeds the 30.00 still refundable"):
        refund(tools, "A1007", "30.01", "k3")
    assert rows(db, "SELECT count(*) FROM refunds WHERE order_id='A1007'") == [(2,)]


@pytest.mark.parametrize(
    "order_id, amount, reason, message",
    [
        ("A1001", 0, "r", "must be positive"),
        ("A1001", -5, "r", "must be positive"),
        ("A1001", "12.345", "r", "more than two decimals"),
        ("A1001", 10, "  ", "reason must be"),
        ("A1002", 10, "r", "outside the 30-day return window"),
        ("A1003", 10, "r", "in transit"),
        ("A1005", 10, "r", "cancelled"),
        ("A1001; DROP TABLE refunds", 10, "r", "not found"),
    ],
)
def test_issue_refund_bad_input(tools, db, order_id, amount, reason, message):
    with pytest.raises(ToolError, match=message):
        refund(tools, order_id, amount, "key", reason=reason)
    assert rows(db, "SELECT count(*) FROM refunds")[0][0] == 3  # only the seeded ones
    assert rows(db, "SELECT count(*) FROM idempotency_keys")[0][0] == 0


def test_issue_refund_needs_a_key(tools):
    with pytest.raises(ToolError, match="idempotency_key is empty"):
        refund(tools, "A1001", 10, "")
    for amount in ("ten", "NaN"):  # the schema rejects these before the tool body runs
        with pytest.raises(ValidationError):
            refund(tools, "A1001", amount, "k")


def test_concurrent_refunds_never_exceed_paid(db):
    make_tools(db)
    barrier, outcomes = threading.Barrier(4), []

    def worker(key):
        tools = make_tools(db)  # each thread as its own process would: its own pack and connections
        barrier.wait()
        try:
            outcomes.append(refund(tools, "A1001", "30.00", key))
        except ToolError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=worker, args=(f"k{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert all("exceeds" in str(o) for o in outcomes if isinstance(o, ToolError))
    assert rows(db, "SELECT sum(amount_cents) FROM refunds WHERE order_id='A1001'") == [(3000,)]


# -- tickets and policy ------------------------------------------------------------------------------------------


def test_open_ticket_once_per_key(tools, db):
    args = {
        "customer": "ann@example.com",
        "subject": "Kettle leaks",
        "body": "Water leaks from the base.",
        "order_id": "A1001",
        "idempotency_key": "run1:step2",
    }
    first = tools["open_ticket"].invoke(args)
    assert first["customer_id"] == "C001" and first["order_id"] == "A1001" and first["status"] == "open"
    assert tools["open_ticket"].invoke(args) == first
    assert rows(
        db, "SELECT customer_id, order_id, subject, status FROM tickets WHERE idempotency_key = ?", "run1:step2"
    ) == [("C001", "A1001", "Kettle leaks", "open")]
    assert rows(db, "SELECT count(*) FROM tickets")[0][0] == 2  # the seeded one and ours


def test_key_is_bound_to_its_tool(tools):
    refund(tools, "A1001", 5, "shared")
    with pytest.raises(ToolError, match="already used by issue_refund"):
        tools["open_ticket"].invoke({"customer": "C001", "subject": "s", "body": "b", "idempotency_key": "shared"})


@pytest.mark.parametrize(
    "args, message",
    [
        ({"customer": "C999", "subject": "s", "body": "b"}, "customer 'C999' not found"),
        ({"customer": "C001", "subject": " ", "body": "b"}, "subject must be"),
        ({"customer": "C001", "subject": "s", "body": ""}, "body must be"),
        ({"customer": "C001", "subject": "x" * 201, "body": "b"}, "subject must be"),
        ({"customer": "C001", "subject": "s", "body": "b", "order_id": "A1004"}, "does not belong to customer"),
        ({"customer": "C001", "subject": "s", "body": "b", "order_id": "nope"}, "order 'nope' not found"),
    ],
)
def test_open_ticket_bad_input(tools, db, args, message):
    with pytest.raises(ToolError, match=message):
        tools["open_ticket"].invoke({**args, "idempotency_key": "k"})
    assert rows(db, "SELECT count(*) FROM tickets")[0][0] == 1


def test_search_policy(tools):
    hits = tools["search_policy"].invoke({"query": "Can I get a refund for a damaged item?"})
    assert hits[0]["topic"] == "Damaged or defective items"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert (
        tools["search_policy"].invoke({"query": "tracking number", "limit": 1})[0]["topic"] == "Shipping and tracking"
    )
    assert tools["search_policy"].invoke({"query": "xylophone"}) == []
    with pytest.raises(ToolError, match="no searchable words"):
        tools["search_policy"].invoke({"query": "the of a"})
    with pytest.raises(ToolError, match="limit must be between 1 and 20"):
        tools["search_policy"].invoke({"query": "refund", "limit": 0})


def test_not_a_database(tmp_path):
    bad = tmp_path / "junk.sqlite3"
    bad.write_text("this is not sqlite")
    with pytest.raises(ToolError, match="customer-service database error"):
        customer_service_tools(bad, today=TODAY)
