"""The answer's form follows the question: Yes/No only for yes/no questions, a number for how many/how much."""

import pytest

from decompose.chains.answer_form import AnswerForm, answer_form, asked_sentence
from decompose.chains.prompts import Prompts

SPRINTS = (
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. "
    "How many total meters does he run a week?"
)


@pytest.mark.parametrize(
    "question, form",
    [
        (SPRINTS, AnswerForm.NUMBER),
        ("How much in dollars does she make every day at the farmers' market?", AnswerForm.NUMBER),
        ("What is the total cost of the glasses?", AnswerForm.NUMBER),
        ("I borrow $405000 for 10 years at 4% interest. What is my monthly payment?", AnswerForm.NUMBER),
        ("What is my name on the account?", AnswerForm.OTHER),
        ("What is the monthly payment on a 34500 USD loan at 4% over 3 years?", AnswerForm.NUMBER),
        ("Revenue went from 7890 to 8490. By what percent did it change?", AnswerForm.NUMBER),
        ("What was the net income in 2019?", AnswerForm.NUMBER),
        ("Convert 12440 CAD to AUD.", AnswerForm.NUMBER),
        ("What is 72000 received in 14 years worth today at a 4% discount rate?", AnswerForm.NUMBER),
        ("What would my 500 shares be worth at today's close?", AnswerForm.NUMBER),
        ("What is worth seeing in Rome?", AnswerForm.OTHER),
        ("What is the return policy for damaged items?", AnswerForm.OTHER),
        ("Is Paris the capital of France?", AnswerForm.YES_NO),
        ("Would a Pict be confused by Old English?", AnswerForm.YES_NO),
        ("Did Aristotle use a laptop, or not?", AnswerForm.YES_NO),
        ("Is the Eiffel Tower taller or shorter than Big Ben?", AnswerForm.OTHER),  # a choice, not yes/no
        ("Who was president of the United States in the year that Citibank was founded?", AnswerForm.PERSON),
        ("When did the last king from Britain's House of Hanover die?", AnswerForm.DATE),
        ("In what year was the company added to the S&P 500?", AnswerForm.DATE),
        ("Where was the inventor of the telephone born?", AnswerForm.PLACE),
        ("What rocket was the first spacecraft that ever approached Uranus launched on?", AnswerForm.OTHER),
        ("Which is taller, the Eiffel Tower or Big Ben?", AnswerForm.OTHER),
        ("", AnswerForm.OTHER),
    ],
)
def test_answer_form(question, form):
    assert answer_form(question) is form


def test_the_asked_sentence_of_a_word_problem_is_its_last_question():
    assert asked_sentence(SPRINTS) == "How many total meters does he run a week?"
    assert asked_sentence("Is it raining? Tell me.") == "Is it raining?"
    assert asked_sentence("no question mark here") == "no question mark here"


def _prompt_text(template, **values):
    return "\n".join(str(m.content) for m in template.format_messages(**values))


def test_a_how_many_question_gets_no_yes_no_instruction():
    prompts = Prompts()
    form = answer_form(SPRINTS).instruction
    for template, values in [
        (prompts.answer, {"question": SPRINTS, "context": "", "form": form}),
        (prompts.cot, {"question": SPRINTS, "context": "", "form": form}),
        (
            prompts.synthesize,
            {"question": SPRINTS, "findings": "1. x → 540", "form": form, "insufficient": "", "context": ""},
        ),
    ]:
        text = _prompt_text(template, **values)
        assert "yes" not in text.lower(), text
        assert "number" in text


def test_a_yes_no_question_is_told_to_start_with_yes_or_no():
    question = "Is Paris the capital of France?"
    text = _prompt_text(Prompts().answer, question=question, context="", form=answer_form(question).instruction)
    assert 'start the answer with "Yes" or "No"' in text


def test_the_cot_prompt_ties_the_form_to_the_answer_line_only():
    # "just the number, not a sentence" said plainly talked a 1.5B model out of reasoning (GSM8K CoT 15/50 → 1/50)
    text = _prompt_text(Prompts().cot, question=SPRINTS, context="", form=answer_form(SPRINTS).instruction)
    human = text.split("Question: ", 1)[1]
    assert human.index("Think step by step") < human.index('"Answer: ..." (on that line: Answer with just the number')
