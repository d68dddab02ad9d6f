"""Synthesis keeps what the steps found: a computed number survives a reply without one, and the reply's form
follows the question."""

import json

from decompose import Decomposer, Orchestrator, ScriptedChatModel
from decompose.agents import get_agent
from decompose.chains.answer_form import AnswerForm
from decompose.chains.synthesis import findings_text, insufficient_reason, keep_computed_number
from decompose.chains.tool_facts import keep_tool_facts
from decompose.models.scripted import asks_for_plan, asks_to_combine
from decompose.plan import Plan
from decompose.tools.calculator import calculator_tools

SPRINTS = (
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. "
    "How many total meters does he run a week?"
)
SPRINT_PLAN = json.dumps(
    {
        "steps": [
            {"id": 1, "question": "How many sprints a week?", "tool": "calculator", "args": {"expression": "3 * 3"}},
            {
                "id": 2,
                "question": "How many meters in {1} sprints?",
                "tool": "calculator",
                "args": {"expression": "{1} * 60"},
                "depends_on": [1],
            },
        ]
    }
)


def sprint_model(synthesis_reply):
    return ScriptedChatModel(rules=[(asks_for_plan, SPRINT_PLAN), (asks_to_combine, synthesis_reply)])


def test_a_computed_number_survives_a_synthesis_reply_without_a_number():
    model = sprint_model("Yes")  # what a capable model said when every prompt demanded Yes or No first
    result = Orchestrator(model, tools=calculator_tools()).run(SPRINTS)
    assert [s.answer for s in result.plan.steps] == [9, 540]
    assert result.answer == "540"
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    # findings show resolved questions, and how each tool result was computed
    assert "How many meters in 9 sprints? [calculator(expression='9 * 60')] → 540" in combine
    assert "Answer with just the number" in combine and '"Yes" or "No"' not in combine


def test_the_synthesizer_checks_then_its_answer_line_is_kept():
    reply = "3 sprints 3 times a week is 9 sprints; 9 × 60 = 540, so the steps fit.\nAnswer: **540 meters**"
    result = Orchestrator(sprint_model(reply), tools=calculator_tools()).run(SPRINTS)
    assert result.answer == "540 meters"


def test_a_synthesis_reply_with_a_number_is_kept():
    result = Orchestrator(sprint_model("He runs 540 meters a week."), tools=calculator_tools()).run(SPRINTS)
    assert result.answer == "He runs 540 meters a week."


def test_the_guard_only_applies_to_number_questions_ending_in_a_tool_step():
    plan = Plan.from_data(json.loads(SPRINT_PLAN))
    for step, answer in zip(plan.steps, (9, 540)):
        step.status, step.answer = "done", answer
    assert keep_computed_number("No", plan, AnswerForm.NUMBER) == "540"
    assert keep_computed_number("No", plan, AnswerForm.YES_NO) == "No"
    plan.steps[1].tool = None  # a model step's wording is not exact: no override
    assert keep_computed_number("No", plan, AnswerForm.NUMBER) == "No"


def finance_plan(result) -> Plan:
    plan = Plan.from_data(
        {
            "steps": [
                {
                    "id": 1,
                    "question": "What is it worth now?",
                    "tool": "present_value",
                    "args": {"future_value": 47000, "annual_rate_pct": 3, "years": 22},
                }
            ]
        }
    )
    plan.steps[0].status, plan.steps[0].answer = "done", result
    return plan


def test_an_answer_that_only_repeats_the_questions_numbers_gives_way_to_the_tools_result():
    question = "How much is $47000 due in 22 years worth now, discounting at 3%?"
    plan = finance_plan({"present_value": "24528.95", "discount": "22471.05"})
    assert (
        keep_computed_number("The present value is $47000.", plan, AnswerForm.NUMBER, question)
        == "present value: 24528.95; discount: 22471.05"
    )
    assert (
        keep_computed_number("It is worth 24,528.95 dollars.", plan, AnswerForm.NUMBER, question)
        == "It is worth 24,528.95 dollars."
    )  # reports the tool's number, formatted its own way
    assert keep_computed_number("About 24529 now.", plan, AnswerForm.NUMBER, question) == "About 24529 now."
    # A number of its own (not the question's): the synthesizer reasoned further, which is not overruled.
    assert keep_computed_number("Roughly 25000.", plan, AnswerForm.NUMBER, question) == "Roughly 25000."
    scalar = finance_plan(540)
    assert keep_computed_number("He runs 3 sprints.", scalar, AnswerForm.NUMBER, SPRINTS) == "540"


def test_a_tools_prose_result_is_not_forced_on_the_answer():
    plan = finance_plan("Delivered orders can be refunded within 30 days.")
    assert keep_computed_number("Yes", plan, AnswerForm.NUMBER, "How many days?") == "Yes"
    assert keep_computed_number("Yes", finance_plan(True), AnswerForm.NUMBER, "How many?") == "Yes"


def test_a_yes_no_answer_follows_the_tools_verdict():
    plan = finance_plan({"order_id": "A1002", "eligible": False, "reason": "delivered 75 days ago", "paid": "89.00"})
    assert keep_tool_facts('Yes  The answer is "Yes".', plan, AnswerForm.YES_NO, {}) == "No: delivered 75 days ago"
    assert (
        keep_tool_facts("No, it was delivered too long ago.", plan, AnswerForm.YES_NO, {})
        == "No, it was delivered too long ago."
    )
    assert keep_tool_facts("It can be refunded.", finance_plan(True), AnswerForm.YES_NO, {}) == "Yes"
    assert keep_tool_facts("Yes", plan, AnswerForm.OTHER, {}) == "Yes"  # not a yes/no question
    two_flags = finance_plan({"eligible": False, "delivered": True})  # which one answers is not known
    assert keep_tool_facts("Yes", two_flags, AnswerForm.YES_NO, {}) == "Yes"


def test_a_refund_question_answered_against_the_tool_ends_in_its_verdict():
    plan = json.dumps(
        {
            "steps": [
                {
                    "id": 1,
                    "question": "Can order A1002 be refunded?",
                    "tool": "refund_eligibility",
                    "args": {"order_id": "A1002"},
                }
            ]
        }
    )
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, "Yes")])
    tools = get_agent("customer-service").make_tools(dry_run=True)
    result = Orchestrator(model, tools=tools).run("Is order A1002 eligible for a refund?")
    assert result.answer.startswith("No: delivered 75 days ago")


def test_a_long_tool_result_is_cut_in_the_findings():
    schedule = [{"month": m, "payment": "1234.56", "interest": "12.34", "balance": "9999.99"} for m in range(1, 49)]
    plan = finance_plan(schedule)
    findings = findings_text(plan)
    assert len(findings) < 2000 and "more characters not shown" in findings
    assert '"month": 1,' in findings  # the first rows are still there
    assert "not shown" not in findings_text(finance_plan({"present_value": "24530.42"}))


def test_findings_name_failed_steps_and_keep_unresolvable_questions():
    plan = Plan.from_data({"steps": [{"id": 1, "question": "A?"}, {"id": 2, "question": "B of {1}?"}]})
    plan.steps[0].status, plan.steps[0].error = "failed", "timeout"
    plan.steps[1].status, plan.steps[1].error = "skipped", "step 1 failed"
    text = findings_text(plan)
    assert "1. A? → (not available: step failed: timeout)" in text
    assert "2. B of {1}? → (not available: step skipped: step 1 failed)" in text


def test_insufficient_reason():
    assert insufficient_reason("INSUFFICIENT: the height of Big Ben") == "the height of Big Ben"
    assert insufficient_reason("**Insufficient:** nothing") == "nothing"
    assert insufficient_reason("INSUFFICIENT:") == "the sub-answers do not answer the question"
    assert insufficient_reason("Big Ben is 96 m tall.") is None


def test_a_yes_no_question_is_judged_briefly_from_the_sub_answers_as_known_facts():
    plan = json.dumps(
        {
            "steps": [
                {"id": 1, "question": "Which coast is Miami on?"},
                {"id": 2, "question": "Is {1} the West Coast?", "depends_on": [1]},
            ]
        }
    )
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan),
            (asks_to_combine, "No"),
            (r"Question: Which coast", "the East Coast"),
            (r"Question: Is the East", "No"),
        ]
    )
    result = Orchestrator(model).run("Is Miami on the West Coast?")
    assert result.answer == "No"
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    assert (
        "Known facts:\n- Which coast is Miami on? → the East Coast\n- Is the East Coast the West Coast? → No" in combine
    )
    assert '"Yes" or "No"' in combine
    # no reasoning at length: it talked the 1.5B model into "Yes" where the facts said No
    assert "step by step" not in combine and "Check in a sentence" not in combine


def test_a_yes_no_synthesis_may_still_ask_for_a_replan():
    plan = json.dumps({"steps": [{"id": 1, "question": "Which coast is Miami on?"}]})
    model = ScriptedChatModel(
        rules=[
            (asks_for_plan, plan),
            (asks_to_combine, "INSUFFICIENT: which coast"),
            (r"Question: Which coast", "unknown"),
        ]
    )
    result = Orchestrator(model, decomposer=Decomposer(max_replans=1)).run("Is Miami on the West Coast?")
    combine = next(c["prompt"] for c in model.calls if "Original question:" in c["prompt"])
    assert "INSUFFICIENT:" in combine
    assert result.answer.startswith("Could not be determined: which coast")
