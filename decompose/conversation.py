"""`Conversation`: multi-turn use of an Orchestrator. Earlier turns are shown to the planner and the
synthesizer (as chat history), bounded by a token budget, so "and when will it arrive?" has its referent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, trim_messages

from decompose.approvals import Decision
from decompose.conversation_state import ConversationState
from decompose.errors import DecomposeError, InputError
from decompose.events import Event
from decompose.orchestrator import Orchestrator
from decompose.result import Result
from decompose.routing import IntentRouting
from decompose.sync import run_sync
from decompose.tokens import count_message_tokens


@dataclass
class Turn:
    question: str
    answer: str
    run_id: str | None = None  # its run's: a turn that waited for approval is answered by resuming it

    @classmethod
    def remembered(cls, question: str, answer: str | None, why_not: object, run_id: str | None = None) -> Turn:
        """A turn as the next turns see it: one without an answer says why, so they know it was not answered."""
        return cls(question=question, answer=answer or f"(no answer: {why_not})", run_id=run_id)

    @classmethod
    def of(cls, result: Result) -> Turn:
        why_not: object = result.error
        if result.awaiting_approval:  # the next turn knows the call was not made (yet)
            waiting = ", ".join(f"{a.tool} {a.args}" for a in result.approvals)
            why_not = f"waiting for a person to approve {waiting}"
        return cls.remembered(result.question, result.answer, why_not, result.run_id)


class Conversation:
    """`routing` (an `IntentRouting`): each turn's intent is detected first (an `IntentDetected` event, the turn's
    first) and the turn runs with its route's tools and instructions; without it every turn runs on
    `orchestrator` as it is."""

    def __init__(
        self, orchestrator: Orchestrator, *, max_history_tokens: int = 1500, routing: IntentRouting | None = None
    ):
        self.orchestrator = orchestrator
        self.max_history_tokens = max_history_tokens
        self.routing = routing
        self.history: list[Turn] = []
        self.state = ConversationState()  # what the turns' tools established: shown to the planner
        self.last_result: Result | None = None

    def send(self, text: str, *, on_event: Callable[[Event], None] | None = None) -> Result:
        return run_sync(self.asend(text, on_event=on_event))

    async def asend(
        self,
        text: str,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_answer: Callable[[str], None] | None = None,
    ) -> Result:
        orchestrator, detected = self.orchestrator, None
        if self.routing is not None:
            detected, orchestrator = await self.routing.aroute(text, self.orchestrator)
            if on_event is not None:
                on_event(detected)
        try:
            result = await orchestrator.arun(
                text, on_event=on_event, history=self.history_messages(), on_answer=on_answer
            )
        except (DecomposeError, asyncio.CancelledError) as exc:  # a cancelled turn still has a plan to show
            partial = Result.partial(exc)
            if partial is not None and detected is not None:
                partial.events.insert(0, detected)
            self.last_result = partial or self.last_result
            if partial is not None:  # what its tools found before it failed is known all the same
                self.state.learn(partial.plan, text, detected.intent if detected else None)
            raise
        if detected is not None:
            result.events.insert(0, detected)  # the run's own events begin after it
        self.last_result = result
        self.history.append(Turn.of(result))  # a failed turn too
        self.state.learn(result.plan, text, detected.intent if detected else None, result.answer or "")
        return result

    def resume(
        self,
        run_id: str,
        *,
        decisions: Mapping[int, Decision | dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Result:
        return run_sync(self.aresume(run_id, decisions=decisions, on_event=on_event))

    async def aresume(
        self,
        run_id: str,
        *,
        decisions: Mapping[int, Decision | dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Result:
        """Go on with one of this conversation's turns that stopped (waiting for approval, or its process died),
        with `decisions` as for `Orchestrator.aresume`: its answer becomes that turn's, so the next turns know
        what was done. Resumed with `orchestrator` (a routed turn's tools are among the agent's)."""
        turn = next((t for t in self.history if t.run_id == run_id), None)
        if turn is None:
            raise InputError(
                f"run {run_id!r} is not a turn of this conversation",
                hint="resume it with Orchestrator.resume, or give the run id of one of this conversation's turns",
            )
        result = await self.orchestrator.aresume(run_id, decisions=decisions, on_event=on_event)
        self.last_result = result
        turn.answer = Turn.of(result).answer
        self.state.learn(result.plan, turn.question, None, result.answer or "")
        return result

    def reset(self) -> None:
        self.history.clear()
        self.state = ConversationState()
        self.last_result = None

    def history_messages(self) -> list[BaseMessage]:
        """The latest turns that fit `max_history_tokens` (counted with the model's tokenizer or tiktoken), then
        the conversation's state, when it knows something."""
        messages: list[BaseMessage] = []
        for turn in self.history:
            messages += [HumanMessage(content=turn.question), AIMessage(content=turn.answer)]
        if messages:
            model = self.orchestrator.model
            messages = trim_messages(
                messages,
                max_tokens=self.max_history_tokens,
                strategy="last",
                start_on="human",
                token_counter=lambda msgs: count_message_tokens(msgs, model),
            )
        state = self.state.message()
        return messages + [state] if state is not None else messages
