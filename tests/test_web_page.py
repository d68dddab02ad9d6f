"""The web page at `/` in a real browser: Playwright drives the system Chromium against a real uvicorn server on
127.0.0.1 whose agents answer with scripted models. Without Chromium or Playwright these tests skip, except in CI
(`CI` set), where they fail: CI must not pass without having run them. The first tests read the page's files over
HTTP only (no browser)."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers import (
    REFUND_ANSWER,
    REFUND_ARGS,
    REFUND_PLAN,
    REFUND_QUESTION,
    REPO,
    TITANIC,
    damaged_tent_shop,
    plan_json,
    tent_refunds,
)
from langchain_core.tools import tool
from servers import free_port, serving

pytest.importorskip("sqlalchemy")
from starlette.testclient import TestClient  # noqa: E402

from decompose.models.scripted import ScriptedChatModel, asks_for_plan, asks_to_combine  # noqa: E402
from decompose.retrieval import LocalDocsRetriever  # noqa: E402
from decompose.serve import create_app  # noqa: E402
from decompose.tools.calculator import calculator_tools  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "decompose" / "serve" / "static"
ANSWER = "James Cameron, born 1954."


def titanic_model(latency=0.0, answer=ANSWER):
    return ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("Who directed Titanic?", "When was {1} born?")),
            (asks_to_combine, answer),
            (r"Question: Who directed Titanic", "James Cameron"),
            (r"Question: Who directed Avatar", "James Cameron (Avatar)"),
            (r"Question: When was James Cameron born", "1954"),
        ],
        default="I do not know",
        latency=latency,
    )


def db(tmp_path):
    return f"sqlite:///{tmp_path / 'serve.sqlite3'}"


# ----- the page's files over HTTP ----------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_without_a_key_and_load_nothing_from_elsewhere(tmp_path):
    with TestClient(create_app(titanic_model(), db=db(tmp_path), api_keys=["k-123"])) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
        assert client.head("/").status_code == 200
        # Everything else still needs the key: the page is no way around it.
        assert client.get("/v1/agents").status_code == 401
        assert client.get("/static/nothing.js").status_code == 401
        assert client.post("/").status_code == 401
    for file in STATIC.iterdir():
        text = file.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", text), file.name


def test_the_page_never_parses_text_as_html():
    # Model text reaches the page only as text nodes; these are the ways it could be parsed as markup instead.
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script


def test_unknown_static_files_are_the_apis_json_404(tmp_path):
    with TestClient(create_app(titanic_model(), db=db(tmp_path))) as client:
        reply = client.get("/static/../app.py")
        assert reply.status_code == 404 and reply.json()["error"]["message"].startswith("no such endpoint")
        assert client.get("/static/").status_code == 404


# ----- in the browser --------------------------------------------------------------------------------------------


def unavailable(reason):
    """Skip, except under CI (`CI` set), where a test that cannot run fails."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(
            f"{reason}. CI must run the web page's browser tests: install Chromium "
            "(apt-get install -y chromium) and the test extra (pip install -e '.[test]')",
            pytrace=False,
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """The system Chromium under Playwright (its own browser download is unreachable), or the reason there is
    none: `page_of` says it inside the test, so that under CI the test itself fails (a fixture would error)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        yield "playwright is not installed"
        return
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        yield "no chromium on PATH"
        return
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def page_of(browser, app, *, ready=True):
    """A fresh browser tab on the app's page; with `ready`, once the agents are listed. Script errors fail."""
    if isinstance(browser, str):
        unavailable(browser)
    errors = []
    with serving(app) as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(url)
        if ready:
            page.wait_for_selector("#agent:not([disabled])")
        try:
            yield page
        finally:
            context.close()
    assert not errors, errors


def ask(page, question, *, review=False):
    page.set_checked("#review", review)
    page.fill("#question", question)
    page.press("#question", "Enter")


def last_card(page, state):
    """The newest turn's card once it reaches `state` (running, done, failed, review, cancelled)."""
    card = page.locator(".turn").last.locator(".agent-card")
    card.and_(page.locator(f'[data-state="{state}"]')).wait_for()
    return card


def titanic_in_review(page):
    """Ask the Titanic question with review on; the card once its plan waits for review."""
    ask(page, TITANIC, review=True)
    return last_card(page, "review")


def steps(card):
    """[(id, status, question)] of the plan tree drawn in the card."""
    return [
        (int(s.get_attribute("data-step-id")), s.get_attribute("data-status"), s.locator(".step-question").inner_text())
        for s in card.locator(".plan .step").all()
    ]


def in_browser(test):
    """A browser test: slow (a browser and a server start) and on a real server."""
    return pytest.mark.slow(pytest.mark.server(test))


@in_browser
def test_the_page_lists_the_agents_and_their_examples(browser, tmp_path):
    with page_of(browser, create_app(titanic_model(), db=db(tmp_path))) as page:
        assert page.locator("#agent option").all_inner_texts() == ["decompose", "customer-service", "finance"]
        page.select_option("#agent", "finance")
        assert "loan_payment" in page.inner_text("#agent-tools")
        example = page.locator("#examples .example").first
        example.click()
        assert page.input_value("#question") == example.inner_text() != ""


@in_browser
def test_a_question_draws_the_plan_live_then_the_answer_sources_and_usage(browser, tmp_path):
    model = titanic_model(latency=0.3)  # slow enough to see a step running before it is done
    docs = LocalDocsRetriever.from_texts(
        [
            ("films#1", "Titanic (1997) was directed by James Cameron."),
            ("people#7", "James Cameron was born in 1954 in Kapuskasing."),
        ]
    )
    app = create_app(model, db=db(tmp_path), orchestrator_options={"retriever": docs})
    with page_of(browser, app) as page:
        ask(page, TITANIC)
        running = page.locator('.plan .step[data-status="running"]')
        running.first.wait_for()  # drawn from the stream while the run goes on
        assert page.locator(".answer").count() == 0
        card = last_card(page, "done")
        # Step 2 is shown with step 1's answer in place of {1}; the plan's own words are its title.
        assert steps(card) == [(1, "done", "Who directed Titanic?"), (2, "done", "When was James Cameron born?")]
        assert card.locator('.step[data-step-id="2"] .step-question').get_attribute("title") == "When was {1} born?"
        assert card.locator('.step[data-step-id="1"] .step-question').get_attribute("title") is None
        assert card.locator('.step[data-step-id="2"] .deps').inner_text() == "after #1"
        assert card.locator('.step[data-step-id="1"] .step-answer').inner_text() == "→ James Cameron"
        assert card.locator('.step[data-step-id="2"] .step-answer').inner_text() == "→ 1954"
        assert "people#7" in card.locator('.step[data-step-id="2"] .sources').inner_text()
        assert card.locator(".answer-text").inner_text() == ANSWER
        assert set(card.locator(".citations .source").all_inner_texts()) == {"films#1", "people#7"}
        # The summary is the Result's usage: the scripted model counts a call's words as its tokens.
        tokens = sum(len(c["prompt"].split()) + len(c["reply"].split()) for c in model.calls)
        summary = card.locator(".usage-total").inner_text()
        assert summary.startswith(f"{tokens:,} tokens") and "4 model calls" in summary, summary
        assert "decompose: " in card.locator(".usage-phases").inner_text()

        ask(page, "And where was he born?")  # the same conversation: the planner sees the first turn
        last_card(page, "done")
        assert ANSWER in model.calls[-4]["prompt"] and "And where was he born?" in model.calls[-4]["prompt"]
        assert page.locator(".turn").count() == 2


def tools_app(tmp_path, final="6 times 7 is 42."):
    @tool
    def inventory(sku: str) -> str:
        """The stock level of a product."""
        raise RuntimeError("the warehouse service is down")

    plan = {
        "steps": [
            {"id": 1, "question": "What is 6 times 7?", "tool": "calculator", "args": {"expression": "6*7"}},
            {"id": 2, "question": "How many widgets are in stock?", "tool": "inventory", "args": {"sku": "W-1"}},
            {"id": 3, "question": "Can {2} widgets fill an order of {1}?", "depends_on": [1, 2]},
        ]
    }
    model = ScriptedChatModel(rules=[(asks_for_plan, json.dumps(plan)), (asks_to_combine, final)], default="?")
    return create_app(model, db=db(tmp_path), tools=[*calculator_tools(), inventory])


@in_browser
def test_a_tool_step_shows_its_tool_and_arguments(browser, tmp_path):
    with page_of(browser, tools_app(tmp_path)) as page:
        ask(page, "Can the widgets in stock fill an order of 6 times 7?")
        step = last_card(page, "done").locator('.step[data-step-id="1"]')
        assert step.get_attribute("data-status") == "done"
        assert step.locator(".tool-name").inner_text() == "calculator"
        assert json.loads(step.locator(".tool-args").inner_text()) == {"expression": "6*7"}
        assert step.locator(".step-answer").inner_text() == "→ 42"


@in_browser
def test_the_page_draws_each_state_the_server_sends_references_resolved_and_attempts_counted(browser, tmp_path):
    from decompose import RetryableToolError

    calls = []

    @tool
    def stock(sku: str) -> int:
        """The stock level of a product."""
        calls.append(sku)
        if len(calls) < 3:
            raise RetryableToolError("the warehouse is busy")
        return 7

    plan = {
        "steps": [
            {"id": 1, "question": "How many W-1 are in stock?", "tool": "stock", "args": {"sku": "W-1"}},
            {"id": 2, "question": "Can {1} widgets fill an order of 5?", "depends_on": [1]},
        ]
    }
    model = ScriptedChatModel(
        rules=[(asks_for_plan, json.dumps(plan)), (asks_to_combine, "Yes."), (r"Question: Can 7 widgets", "yes")],
        default="?",
        latency=0.1,
    )
    with page_of(browser, create_app(model, db=db(tmp_path), tools=[stock])) as page:
        # Every drawing of a step, as it happens: (id, status, question shown).
        page.evaluate("""() => {
          window.drawn = [];
          new MutationObserver((changes) => { for (const c of changes) for (const n of c.addedNodes) {
            if (n.classList && n.classList.contains("plan")) n.querySelectorAll(".step").forEach((s) =>
              window.drawn.push([s.dataset.stepId, s.dataset.status, s.querySelector(".step-question").textContent]));
            else if (n.matches && n.matches(".step")) window.drawn.push(
              [n.dataset.stepId, n.dataset.status, n.querySelector(".step-question").textContent]);
          } }).observe(document.getElementById("transcript"), { childList: true, subtree: true });
        }""")
        ask(page, "Can the widgets in stock fill an order of 5?")
        card = last_card(page, "done")
        assert steps(card) == [
            (1, "done", "How many W-1 are in stock?"),
            (2, "done", "Can 7 widgets fill an order of 5?"),
        ]
        assert "3 attempts" in card.locator('.step[data-step-id="1"] .step-meta').inner_text()
        assert card.locator('.step[data-step-id="2"] .step-meta').inner_text().count("attempts") == 0
        drawn = [tuple(d) for d in page.evaluate("window.drawn") if d[0] == "2"]
        assert ("2", "pending", "Can {1} widgets fill an order of 5?") in drawn  # before step 1 answered
        assert ("2", "running", "Can 7 widgets fill an order of 5?") in drawn  # resolved as soon as it was
        assert calls == ["W-1"] * 3


@in_browser
def test_a_failing_step_shows_failed_and_its_dependents_skipped(browser, tmp_path):
    with page_of(browser, tools_app(tmp_path)) as page:
        ask(page, "Can the widgets in stock fill an order of 6 times 7?")
        card = last_card(page, "done")
        assert [status for _, status, _ in steps(card)] == ["done", "failed", "skipped"]
        failed = card.locator('.step[data-step-id="2"]')
        assert "the warehouse service is down" in failed.locator(".step-error").inner_text()
        assert failed.locator(".tool-name").inner_text() == "inventory"
        assert card.locator('.step[data-step-id="3"] .step-error').inner_text() == "step 2 failed"


@in_browser
def test_a_run_that_fails_shows_the_error_and_keeps_the_developers_hint_in_the_console(browser, tmp_path):
    model = ScriptedChatModel(rules=[(asks_for_plan, "no plan, sorry")], default="x")
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        console = []
        page.on("console", lambda message: console.append(message.text))
        ask(page, TITANIC)
        card = last_card(page, "failed")
        assert "plan" in card.locator(".run-error .message").inner_text()
        assert card.locator(".run-error .hint").count() == 0
        assert any(line.startswith("decompose: ") and "--on-plan-failure" in line for line in console)
        assert card.locator(".answer").count() == 0


@in_browser
def test_review_then_approve_runs_the_plan_as_reviewed(browser, tmp_path):
    model = titanic_model()
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        card = titanic_in_review(page)
        assert card.locator(".step-input").evaluate_all("inputs => inputs.map(i => i.value)") == [
            "Who directed Titanic?",
            "When was {1} born?",
        ]
        assert len(model.calls) == 1  # the plan only: nothing ran
        card.get_by_role("button", name="Approve and run").click()
        last_card(page, "done")
        assert steps(card) == [(1, "done", "Who directed Titanic?"), (2, "done", "When was James Cameron born?")]
        assert card.locator(".answer-text").inner_text() == ANSWER
        # A turn of the page's conversation like any other: its summary counts the planning call too.
        assert "4 model calls" in card.locator(".usage-total").inner_text()
        ask(page, "And where was he born?")
        last_card(page, "done")
        assert ANSWER in model.calls[-4]["prompt"]  # the next turn's planner sees the reviewed turn


@in_browser
def test_review_edit_a_step_question_and_the_run_uses_the_edited_plan(browser, tmp_path):
    model = titanic_model()
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        card = titanic_in_review(page)
        card.get_by_label("Step 1 question").fill("Who directed Avatar?")
        card.get_by_role("button", name="Approve and run").click()
        last_card(page, "done")
        assert steps(card)[0] == (1, "done", "Who directed Avatar?")
        assert card.locator('.step[data-step-id="1"] .step-answer').inner_text() == "→ James Cameron (Avatar)"
        asked = [c["prompt"] for c in model.calls]
        assert any("Question: Who directed Avatar?" in p for p in asked)
        assert not any("Question: Who directed Titanic?" in p for p in asked)


@in_browser
def test_review_edit_the_plan_json_with_bad_plans_refused_until_fixed(browser, tmp_path):
    model = titanic_model()
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        card = titanic_in_review(page)
        card.get_by_role("button", name="Edit JSON").click()
        editor = card.get_by_label("Plan JSON")
        assert json.loads(editor.input_value())["steps"][1]["question"] == "When was {1} born?"
        approve = card.get_by_role("button", name="Approve and run")

        editor.fill('{"steps": [')
        approve.click()
        assert card.locator(".review-message").inner_text().startswith("The plan is not valid JSON")
        editor.fill(json.dumps({"steps": [{"id": 1, "question": "Who directed {5}?"}]}))
        approve.click()  # the server checks it: 422, said in the card, and the plan can still be fixed
        card.locator(".review-message", has_text="the plan is invalid").wait_for()
        assert len(model.calls) == 1

        editor.fill(json.dumps({"steps": [{"id": 1, "question": "Who directed Titanic?"}]}))
        approve.click()
        last_card(page, "done")
        assert steps(card) == [(1, "done", "Who directed Titanic?")]
        assert not any("When was James Cameron born" in c["prompt"] for c in model.calls)


@in_browser
def test_review_cancel_runs_nothing(browser, tmp_path):
    model = titanic_model()
    app = create_app(model, db=db(tmp_path))
    with page_of(browser, app) as page:
        card = titanic_in_review(page)
        run_id = card.get_attribute("data-run-id")
        card.get_by_role("button", name="Cancel").click()
        last_card(page, "cancelled")
        assert "not run" in card.inner_text()
        assert card.get_by_role("button", name="Approve and run").count() == 0
        time.sleep(0.3)  # a run started by mistake would have called the model by now
        assert len(model.calls) == 1
        assert app.state.service.store.review(run_id)["status"] == "cancelled"  # and can never be approved


@in_browser
def test_bad_input_shows_a_clear_message(browser, tmp_path):
    model = titanic_model()
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        page.click("#ask")
        assert page.inner_text("#form-message") == "Type a question first."
        ask(page, "   \n  ")
        assert page.inner_text("#form-message") == "Type a question first."
        assert page.locator(".turn").count() == 0

        page.fill("#question", "x" * 20_001)  # the server refuses it: its message is shown, the text kept
        page.click("#ask")
        card = last_card(page, "failed")
        assert "over 20000" in card.locator(".run-error .message").inner_text()
        assert "over 20000" in page.inner_text("#form-message")
        assert len(page.input_value("#question")) == 20_001
        assert model.calls == []


@in_browser
def test_model_text_with_markup_is_shown_as_text(browser, tmp_path):
    evil_answer = "<script>window.pwned = 'answer'</script><b>bold</b>"
    evil_step = "<img src=x onerror=\"window.pwned = 'step'\">"
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan_json("What is <script>window.pwned = 'plan'</script>?")),
            (asks_to_combine, evil_answer),
        ],
        default=evil_step,
    )
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        question = "Is <script>window.pwned = 'question'</script> safe?"
        ask(page, question)
        card = last_card(page, "done")
        assert card.locator(".answer-text").inner_text() == evil_answer
        assert card.locator(".step-answer").inner_text() == f"→ {evil_step}"
        assert steps(card) == [(1, "done", "What is <script>window.pwned = 'plan'</script>?")]
        assert page.locator(".user-question").inner_text() == question
        assert page.locator("main script, main img, main b").count() == 0
        assert page.evaluate("window.pwned") is None


@in_browser
def test_a_program_step_shows_its_program_and_output_as_text(browser, tmp_path):
    program = "markup = '<img src=x onerror=\"window.pwned = 1\">'\nprint(markup)\nanswer = 6 * 7"
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, json.dumps({"steps": [{"id": 1, "question": "What is 6 times 7?", "kind": "program"}]})),
            (r"Question: What is 6 times 7", f"```python\n{program}\n```"),
        ],
        default="?",
    )
    with page_of(browser, create_app(model, db=db(tmp_path))) as page:
        ask(page, "What is 6 times 7?")
        step = last_card(page, "done").locator('.step[data-step-id="1"]')
        assert step.locator(".program-kind").inner_text() == "program"
        assert step.locator(".step-answer").inner_text() == "→ 42"
        step.locator(".program summary").click()
        assert step.locator("pre.program-code").inner_text() == program
        assert step.locator("pre.program-output").inner_text().strip() == '<img src=x onerror="window.pwned = 1">'
        assert page.locator("main img").count() == 0 and page.evaluate("window.pwned") is None


@in_browser
def test_with_api_keys_the_page_asks_for_one_and_sends_it(browser, tmp_path):
    with page_of(browser, create_app(titanic_model(), db=db(tmp_path), api_keys=["k-123"]), ready=False) as page:
        page.locator("#key-form").wait_for()
        assert page.locator("#agent").is_disabled()
        page.fill("#api-key", "wrong")
        page.click("#key-form button")
        page.locator("#key-message", has_text="not valid").wait_for()

        page.fill("#api-key", "k-123")
        page.click("#key-form button")
        page.wait_for_selector("#agent:not([disabled])")
        assert page.locator("#key-form").is_hidden()
        ask(page, TITANIC)  # the key goes with the run's requests too
        assert last_card(page, "done").locator(".answer-text").inner_text() == ANSWER


# ----- tool approvals: a refund waits for a person on the page -------------------------------------------------

REFUND_RULES = f"""
import json
from decompose.models.scripted import asks_for_plan, asks_to_combine

rules = [(asks_for_plan, json.dumps({REFUND_PLAN!r})), (asks_to_combine, {REFUND_ANSWER!r})]
default = "?"
"""


class ServeProcess:
    """`python -m decompose.cli serve` on a fixed port of 127.0.0.1 (so a page loaded from one process talks to
    the next), the scripted shop model, the database `db` and the demo shop in `cache`."""

    def __init__(self, tmp_path, port, db, cache):
        rules = tmp_path / "refund_rules.py"
        rules.write_text(REFUND_RULES)
        env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["DECOMPOSE_CACHE"] = str(cache)
        self.log = tmp_path / f"serve-{time.monotonic_ns()}.log"
        command = [sys.executable, "-m", "decompose.cli", "serve", "--port", str(port), "--db", db]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*command, "--model", f"scripted:{rules}"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while "listening on" not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)


def ask_for_the_refund(page):
    """Ask the customer-service agent for the tent's refund; the card once the refund waits for approval."""
    page.select_option("#agent", "customer-service")
    ask(page, REFUND_QUESTION)
    return last_card(page, "awaiting")


@in_browser
def test_a_refund_waits_for_approval_across_a_server_restart_and_is_made_once(browser, tmp_path):
    if isinstance(browser, str):
        unavailable(browser)
    shop = damaged_tent_shop(tmp_path / "cache")
    db, port = f"sqlite:///{tmp_path / 'serve.sqlite3'}", free_port()
    server = ServeProcess(tmp_path, port, db, tmp_path / "cache")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors = []
        page.on("pageerror", lambda error: errors.append(error))
        page.goto(server.url)
        page.wait_for_selector("#agent:not([disabled])")
        card = ask_for_the_refund(page)
        assert [status for _, status, _ in steps(card)] == ["done", "awaiting"]
        waiting = card.locator('.step[data-step-id="2"]')
        assert waiting.locator(".status").inner_text().startswith("‖")
        request = card.locator('.approval[data-step-id="2"]')
        assert request.locator(".tool-name").inner_text() == "issue_refund"
        assert json.loads(request.locator(".tool-args").inner_text()) == REFUND_ARGS
        assert request.locator(".approval-reason").inner_text() == "Why it waits: amount 189 is above 100"
        assert card.locator(".turn-status").inner_text() == "awaiting approval"
        assert tent_refunds(shop) == []

        server.stop()  # the decision reaches another process: the run waits in the database, not in memory
        server = ServeProcess(tmp_path, port, db, tmp_path / "cache")
        request.get_by_role("button", name="Approve").click()
        last_card(page, "done")
        assert [status for _, status, _ in steps(card)] == ["done", "done"]
        answer = card.locator(".answer-text").inner_text()
        assert answer.startswith(REFUND_ANSWER) and "Refund R0" in answer and "189.00" in answer, answer
        assert card.locator(".approval").count() == 0
        assert tent_refunds(shop) == [("A1023", 18900)]  # made once
        assert httpx.get(f"{server.url}/v1/approvals").json()["approvals"] == []
        assert not errors, errors
    finally:
        context.close()
        server.stop()


@pytest.fixture
def shop_app(tmp_path, monkeypatch):
    monkeypatch.setenv("DECOMPOSE_CACHE", str(tmp_path / "cache"))
    shop = damaged_tent_shop(tmp_path / "cache")
    model = ScriptedChatModel(
        rules=[(asks_for_plan, json.dumps(REFUND_PLAN)), (asks_to_combine, REFUND_ANSWER)], default="?"
    )
    return create_app(model, db=db(tmp_path)), shop


@in_browser
def test_a_refund_rejected_on_the_page_is_not_made_and_the_answer_says_why(browser, shop_app):
    app, shop = shop_app
    with page_of(browser, app) as page:
        card = ask_for_the_refund(page)
        request = card.locator('.approval[data-step-id="2"]')
        request.get_by_role("button", name="Reject").click()
        request.get_by_label("Step 2 rejection reason").fill("the photo shows no damage")
        request.get_by_role("button", name="Reject with this reason").click()
        last_card(page, "done")
        assert "not approved: the photo shows no damage" in card.locator(".answer-text").inner_text()
        assert [status for _, status, _ in steps(card)] == ["done", "failed"]
        assert tent_refunds(shop) == []


@in_browser
def test_a_refund_edited_on_the_page_is_checked_then_made_with_the_new_amount(browser, shop_app):
    app, shop = shop_app
    with page_of(browser, app) as page:
        card = ask_for_the_refund(page)
        request = card.locator('.approval[data-step-id="2"]')
        request.get_by_role("button", name="Edit").click()
        editor = request.get_by_label("Step 2 arguments")
        assert json.loads(editor.input_value()) == REFUND_ARGS
        approve = request.get_by_role("button", name="Approve with these arguments")
        editor.fill("{nope")
        approve.click()
        assert card.locator(".review-message").inner_text().startswith("The arguments are not valid JSON")
        editor.fill(json.dumps({**REFUND_ARGS, "amount": "lots"}))
        approve.click()  # the server checks them against the tool: 422, said in the card, still to decide
        card.locator(".review-message", has_text="do not fit").wait_for()
        editor.fill(json.dumps({**REFUND_ARGS, "amount": "150.00"}))
        approve.click()
        last_card(page, "done")
        assert "150.00" in card.locator(".answer-text").inner_text()
        assert tent_refunds(shop) == [("A1023", 15000)]
