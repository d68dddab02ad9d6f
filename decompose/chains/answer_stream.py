"""The answer as the synthesis writes it. A run's `AnswerStream` passes on text only while it continues what was
already passed on, so a client never receives a word twice; a synthesis call's `Draft` offers it, token by token,
the part of the reply that is sure to begin the answer: the words after the "Answer:" marker (or the whole reply
where none is asked for) that the answer's checks keep as the model wrote them.

Held back: a reply that may still be the replan marker, a prompt's reasoning before its "Answer:" line, a word
still being written, and (where the tools' facts can rewrite a sentence) a sentence still being written. A retry
or a fallback model starts the reply again: its words pass only where they go beyond what was sent and continue
it. At the end the run offers its final answer; where the checks changed text already sent (rare: a later
"Answer:" line, a dropped sentence), the stream's owner learns it from `sent` and says so (see
`decompose.serve.openai_compat`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from decompose.chains.answer_form import SENTENCE_END
from decompose.chains.answer_line import ANSWER_LINE, strip_markup
from decompose.chains.prompts import INSUFFICIENT_MARKER

_MARKER_WORD = INSUFFICIENT_MARKER.rstrip(":").upper()
_LEADING = re.compile(r"^\W*")


class AnswerStream:
    """The answer text sent so far for one run; it only grows."""

    def __init__(self, send: Callable[[str], None]):
        self.send = send
        self.sent = ""

    def offer(self, text: str) -> None:
        """Send what `text` adds, when it continues what was sent."""
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.send(text[len(self.sent) :])
            self.sent = text


class Draft:
    """One model call's reply as it grows (`ModelCaller.invoke(tokens=...)` feeds it), offered to `stream` as
    the answer it would make. `answer_of(reply)` is the caller's own reading of a reply into the answer;
    `marked`: the answer is on an "Answer:" line (else the whole reply); `by_sentence`: checks may rewrite a
    sentence, so only whole sentences pass; `may_replan`: the reply may be the replan marker."""

    def __init__(
        self,
        stream: AnswerStream,
        answer_of: Callable[[str], str],
        *,
        marked: bool,
        by_sentence: bool = False,
        may_replan: bool = False,
    ):
        self.stream = stream
        self.answer_of = answer_of
        self.marked = marked
        self.by_sentence = by_sentence
        self.may_replan = may_replan
        self.reply = ""

    def restart(self) -> None:
        """A new attempt (a retry, a fallback model): its reply starts again."""
        self.reply = ""

    def __call__(self, text: str) -> None:
        self.reply += text
        candidate = self._candidate()
        if candidate:
            self.stream.offer(candidate)

    def _candidate(self) -> str:
        if self.may_replan and self._may_be_replan():
            return ""
        start = 0
        if self.marked:
            found = list(ANSWER_LINE.finditer(self.reply))
            if not found:  # still the reasoning before the answer's line
                return ""
            start = found[-1].start(1)
            line_end = self.reply.find("\n", start)
            written = self.reply[: line_end if line_end >= 0 else None]  # what follows the line waits for the end
        else:
            written = self.reply
        ends = [m.start() for m in re.finditer(r"\s", written) if m.start() > start]
        if not ends:  # a word still being written is held
            return ""
        cut = written[: ends[-1]]
        kept = strip_markup(cut[start:]) if self.marked else cut.strip()
        agreed = _common_prefix(self.answer_of(cut), kept)
        if (self.by_sentence or agreed != kept) and not (agreed == kept and kept[-1:] in (".", "!", "?")):
            agreed = _through_last_sentence(agreed)  # a sentence the checks rewrote, or may: whole ones only
        return agreed

    def _may_be_replan(self) -> bool:
        start = _LEADING.sub("", self.reply)[: len(_MARKER_WORD)].upper()
        return _MARKER_WORD.startswith(start)


def _through_last_sentence(text: str) -> str:
    ends = [m.start() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else ""


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]
