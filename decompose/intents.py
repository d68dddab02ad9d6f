"""Intent recognition and routing: which kind of request a customer's message is, and what the agent does with it.

    router = IntentRouter.zero_shot("openai:gpt-4o-mini", ["request_refund", "card_arrival", ...])
    router = IntentRouter.load("intent-router")           # made by `decompose train --intents banking77_train.csv`
    router.classify("I am still waiting on my card?")      # IntentPrediction(intent='card_arrival', confidence=0.91)


Two routers, one interface (`classify`, `aclassify`, `classify_many`):

- zero-shot: the chat model picks a name under structured output (a JSON schema whose one field is an enum of
  the intent names); a model without structured output is asked for the name and its reply is read. A reply that
  names no intent gives the fallback intent (`other`): a router never sinks a turn.
- trained: mean-pooled last hidden states of a local model (the embedded SmolLM2 by default) and a linear
  classifier trained on them (`decompose.train.intents`). Saved as plain numpy weights and JSON, so loading needs
  neither scikit-learn nor a pickle.

Routing a turn by its intent is `decompose.routing`. numpy and torch are imported on first use only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage

from decompose.calls import ModelCaller
from decompose.errors import ConfigError
from decompose.events import Usage
from decompose.models.fallback import FallbackModel
from decompose.retry import RetryPolicy

FALLBACK_INTENT = "other"
ROUTER_FILE = "intent_router.json"
WEIGHTS_FILE = "weights.npz"
FORMAT = "decompose-intent-router"

ZERO_SHOT_SYSTEM = """You sort customer messages by intent.
Choose the one intent from this list that best matches the customer's message:
{intents}
Reply with the intent name only, exactly as written in the list."""


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float | None  # the classifier's probability; None where a model only names a choice
    router: str  # which router decided: "zero-shot:<model>" or "trained:<model>"
    error: str | None = None  # why the fallback intent was given (an unreadable reply, a failed call)


class IntentRouter:
    """The common interface; build one with `IntentRouter.zero_shot(...)`, `IntentRouter.load(DIR)` or
    `decompose.train.intents.train_intents(...)`."""

    intents: list[str]
    fallback: str = FALLBACK_INTENT
    name: str = "router"

    @staticmethod
    def zero_shot(
        model: Any,
        intents: Sequence[str],
        *,
        fallback: str = FALLBACK_INTENT,
        descriptions: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> ZeroShotRouter:
        return ZeroShotRouter(model, intents, fallback=fallback, descriptions=descriptions, retry=retry)

    @staticmethod
    def load(folder: str | Path, *, model: Any = None, min_confidence: float = 0.0) -> TrainedRouter:
        return TrainedRouter.load(folder, model=model, min_confidence=min_confidence)

    def classify(self, text: str) -> IntentPrediction:
        return self.classify_many([text])[0]

    async def aclassify(self, text: str) -> IntentPrediction:
        import asyncio

        return (await asyncio.to_thread(self.classify_many, [text]))[0]

    def classify_many(self, texts: Sequence[str]) -> list[IntentPrediction]:
        raise NotImplementedError


# ----- zero-shot --------------------------------------------------------------------------------------------


class ZeroShotRouter(IntentRouter):
    """The chat model chooses among `intents` (structured output where the model has it). Its calls go through
    `ModelCaller` as a run's do: retried under `retry` (default `RetryPolicy()`), then the model's fallbacks."""

    def __init__(
        self,
        model: Any,
        intents: Sequence[str],
        *,
        fallback: str = FALLBACK_INTENT,
        descriptions: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
    ):
        from decompose.models import chat_model_of, load_model

        self.intents = _checked_intents(intents)
        self.fallback = fallback
        self.model = load_model(model)
        chat = chat_model_of(self.model)
        self.name = f"zero-shot:{_model_name(chat or self.model)}"
        listed = [f"- {i}: {descriptions[i]}" if descriptions and i in descriptions else f"- {i}" for i in self.intents]
        self.system = ZERO_SHOT_SYSTEM.format(intents="\n".join(listed))
        # The enum holds the reply to a real name; the fallback is a choice too, so "none of these" is expressible.
        names = self.intents + ([fallback] if fallback not in self.intents else [])
        self.schema = {
            "title": "IntentChoice",
            "description": "The customer's intent.",
            "type": "object",
            "properties": {"intent": {"type": "string", "enum": names}},
            "required": ["intent"],
            "additionalProperties": False,
        }
        self.retry = retry or RetryPolicy()
        self.structured = self._has_structured_output()
        self.caller = ModelCaller(
            self.model if isinstance(self.model, FallbackModel) else [self.model],
            policy=self.retry,
            usage=Usage(),
            emit=lambda event: None,
        )

    def _has_structured_output(self) -> bool:
        try:
            self._structured(self.model)
        except (NotImplementedError, ConfigError, TypeError, ValueError):  # no structured output: read the reply
            return False
        return True

    def _structured(self, model: Any) -> Any:
        return model.with_structured_output(self.schema, method="json_schema", include_raw=True)

    def _messages(self, text: str) -> list:
        return [SystemMessage(content=self.system), HumanMessage(content=text)]

    def classify_many(self, texts: Sequence[str]) -> list[IntentPrediction]:
        from decompose.sync import run_sync

        return run_sync(self.aclassify_many(texts))

    async def aclassify(self, text: str) -> IntentPrediction:
        return (await self.aclassify_many([text]))[0]

    async def aclassify_many(self, texts: Sequence[str], *, max_concurrency: int = 8) -> list[IntentPrediction]:
        """Concurrent calls: a local model batches them, a server answers them in parallel."""
        import asyncio

        slots = asyncio.Semaphore(max_concurrency)

        async def one(text: str) -> IntentPrediction:
            async with slots:
                return await self._one(text)

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def _one(self, text: str) -> IntentPrediction:
        messages = self._messages(text)
        try:
            if self.structured:
                out, _ = await self.caller.invoke(messages, phase="route", build=self._structured, key="intent")
                parsed, raw = out.get("parsed"), out.get("raw")
                choice = parsed.get("intent") if isinstance(parsed, dict) else getattr(parsed, "intent", None)
                if choice in self.intents or choice == self.fallback:
                    return IntentPrediction(choice, None, self.name)
                reply = getattr(raw, "text", "") or ""
            else:
                reply = (await self.caller.invoke(messages, phase="route"))[0].text
        except Exception as exc:  # noqa: BLE001 — a failed call routes to the fallback; the event says why
            return IntentPrediction(self.fallback, 0.0, self.name, error=f"{type(exc).__name__}: {exc}")
        choice = parse_intent(reply, self.intents)
        if choice is None:
            return IntentPrediction(
                self.fallback, 0.0, self.name, error=f"the model named no known intent: {reply.strip()[:80]!r}"
            )
        return IntentPrediction(choice, None, self.name)


def parse_intent(reply: str, intents: Sequence[str]) -> str | None:
    """The intent a free-text reply names: JSON `{"intent": ...}`, the bare name (any case, spaces or hyphens
    for underscores), or the longest name found inside the reply; None when it names none."""
    text = (reply or "").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("intent"), str):
            text = data["intent"]
    except ValueError:
        pass
    by_key = {intent_key(i): i for i in intents}
    if (key := intent_key(text)) in by_key:
        return by_key[key]
    flat = f"_{intent_key(text)}_"
    found = [i for k, i in by_key.items() if k and f"_{k}_" in flat]
    return max(found, key=len) if found else None


def intent_key(text: str) -> str:
    """An intent name or a model's reply reduced to lowercase words joined by `_`: how names are compared."""
    return re.sub(r"[^a-z0-9?]+", "_", text.strip().strip("`'\".").lower()).strip("_")


# ----- trained ----------------------------------------------------------------------------------------------


class SentenceEncoder:
    """Sentence vectors from a local causal LM: the mean of its last hidden states over the text's tokens.

    Batched (texts sorted by length, so padding is small), no gradients, the LM head never run."""

    def __init__(self, model: Any = "smollm2", *, max_length: int = 64, batch_size: int = 32):
        from decompose.models import chat_model_of, load_model

        self.spec = model if isinstance(model, str) else None
        chat = chat_model_of(base_model(model) if isinstance(model, str) else load_model(model))
        if getattr(chat, "hf_model", None) is None or getattr(chat, "tokenizer", None) is None:
            raise ConfigError(
                f"a trained intent router needs a local Transformers model, not {type(chat).__name__}",
                hint="use 'smollm2' (the default) or 'hf:PATH'",
            )
        self.chat: Any = chat  # a local model (ChatTransformers): its hf_model and tokenizer, checked above
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, texts: Sequence[str]) -> Any:
        import numpy as np
        import torch

        tokenizer, hf_model = self.chat.tokenizer, self.chat.hf_model
        base = hf_model.base_model  # the transformer without the LM head: its logits would be wasted work
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        ids = [tokenizer.encode(t or " ", add_special_tokens=False)[: self.max_length] or [pad] for t in texts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros((len(ids), hf_model.config.hidden_size), dtype=np.float32)
        device = next(hf_model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in batch)
                # Right padding: under causal attention the real tokens never see the pads after them.
                input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                hidden = base(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
                m = mask.to(device).unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1)
                out[batch] = pooled.float().cpu().numpy()
        return out


def base_model(spec: str) -> Any:
    """A local model from its spec without a decomposer adapter: the vectors are the base weights' (the router
    was trained on those)."""
    from decompose.models import load_model

    return load_model(spec, adapter="none")


class TrainedRouter(IntentRouter):
    """A linear classifier over `SentenceEncoder` vectors. `weights` (intents × hidden) and `bias` already fold
    in the feature scaling used in training, so a prediction is one matrix product and a softmax."""

    def __init__(
        self,
        intents: Sequence[str],
        weights: Any,
        bias: Any,
        *,
        encoder: SentenceEncoder,
        info: dict[str, Any] | None = None,
        fallback: str = FALLBACK_INTENT,
        min_confidence: float = 0.0,
    ):
        self.intents = _checked_intents(intents)
        self.weights, self.bias = weights, bias
        self.encoder = encoder
        self.info = dict(info or {})
        self.fallback = fallback
        self.min_confidence = min_confidence
        self.name = f"trained:{self.info.get('model') or _model_name(encoder.chat)}"

    def probabilities(self, texts: Sequence[str]) -> Any:
        import numpy as np

        logits = self.encoder.encode(texts) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def classify_many(self, texts: Sequence[str]) -> list[IntentPrediction]:
        if not texts:
            return []
        out = []
        for row in self.probabilities(texts):
            best = int(row.argmax())
            confidence = float(row[best])
            if confidence < self.min_confidence:  # unsure: the fallback route, not a wrong specific one
                out.append(
                    IntentPrediction(
                        self.fallback,
                        confidence,
                        self.name,
                        error=f"best guess {self.intents[best]} below min_confidence",
                    )
                )
            else:
                out.append(IntentPrediction(self.intents[best], confidence, self.name))
        return out

    def save(self, folder: str | Path) -> Path:
        import numpy as np

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / WEIGHTS_FILE, weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32))
        info = {
            "format": FORMAT,
            "version": 1,
            **self.info,
            "intents": self.intents,
            "fallback": self.fallback,
            "features": "mean of the model's last hidden states over the text's tokens",
            "max_length": self.encoder.max_length,
        }
        (folder / ROUTER_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, model: Any = None, min_confidence: float = 0.0) -> TrainedRouter:
        """Load what `save` (or `decompose train --intents`) wrote. `model`: an already loaded chat model to take
        the features from (it must be the model the router was trained on); default: load the saved spec."""
        import numpy as np

        folder = Path(folder)
        meta_path, weights_path = folder / ROUTER_FILE, folder / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise ConfigError(
                f"{folder} is not an intent router (no {ROUTER_FILE} and {WEIGHTS_FILE})",
                hint="make one with: decompose train --intents banking77_train.csv --out DIR",
            )
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
            arrays = np.load(weights_path)
            weights, bias = arrays["weights"], arrays["bias"]
        except (ValueError, KeyError, OSError) as exc:
            raise ConfigError(
                f"{folder}: unreadable intent router ({exc})", hint="train it again with decompose train --intents"
            ) from None
        if info.get("format") != FORMAT or weights.shape[0] != len(info.get("intents", ())):
            raise ConfigError(
                f"{folder}: not a {FORMAT} folder, or its weights do not match its intents",
                hint="train it again with decompose train --intents",
            )
        encoder = SentenceEncoder(
            model if model is not None else info.get("model", "smollm2"), max_length=int(info.get("max_length", 64))
        )
        if weights.shape[1] != encoder.chat.hf_model.config.hidden_size:
            raise ConfigError(
                f"{folder} was trained on {info.get('model')!r}, whose vectors have {weights.shape[1]} "
                f"values, not on this model ({encoder.chat.hf_model.config.hidden_size})",
                hint="load it with the model it was trained on",
            )
        return cls(
            info["intents"],
            weights,
            bias,
            encoder=encoder,
            info=info,
            fallback=info.get("fallback", FALLBACK_INTENT),
            min_confidence=min_confidence,
        )


def _checked_intents(intents: Iterable[str]) -> list[str]:
    names = [str(i).strip() for i in intents]
    if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(
            f"an intent router needs two or more distinct, non-empty intent names, got {names[:5]}",
            hint="pass the names of the intents to choose among",
        )
    return names


def _model_name(model: Any) -> str:
    path = getattr(model, "model_path", None)
    if path:
        return Path(path).name
    return str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)
