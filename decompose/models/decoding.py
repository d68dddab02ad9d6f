"""How a local model picks its tokens: greedy, sampling or beam search, as one validated, hashable `Decoding`.

Settings come in layers: the model's defaults (`ChatTransformers(num_beams=4)`, `load_model("smollm2",
decoding=Decoding(num_beams=4))`, `--decoding num_beams=4`), then a call's (`model.invoke(msgs, top_p=0.9)`,
`model.bind(...)`), where a call's value wins. `resolved()` checks the result once, before anything is queued,
and drops what the chosen mode does not use (top_p when greedy, length_penalty without beams), so requests that
decode alike batch together. Decoding itself is transformers': `generation_config()` is a `GenerationConfig`
holding only what was set; the model's own generation config and transformers' defaults fill in the rest.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, replace
from typing import Any

from pydantic import BaseModel

from decompose.errors import ConfigError

OPTIONS = (
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "repetition_penalty",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "seed",
)
HELP = (
    "do_sample, temperature, top_k, top_p, repetition_penalty, seed (sampling); num_beams, length_penalty, "
    "early_stopping (beam search)"
)


@dataclass(frozen=True)
class Decoding:
    """Decoding settings; None leaves a setting to the layer below (the model's defaults, then transformers').

    Greedy unless sampling: `do_sample=True`, or a `temperature` above 0 with `do_sample` unset (as
    LangChain's other chat models read it). `top_k`, `top_p` and `seed` apply only when sampling;
    `length_penalty` and `early_stopping` only with `num_beams > 1`; `repetition_penalty` always.
    """

    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None  # 0 turns top-k filtering off; unset: the model's default (transformers': 50)
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int | None = None
    length_penalty: float | None = None  # > 0 favours longer beams, < 0 shorter ones
    early_stopping: bool | str | None = None  # True, False or "never", as in transformers
    seed: int | None = None  # a seeded sampled request runs in a generate call of its own: reproducible

    def __post_init__(self) -> None:
        for name, kinds in _TYPES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                raise ConfigError(f"{name}={value!r} is not {_KIND_NAMES[kinds]}", hint=f"e.g. {_EXAMPLES[name]}")
            if isinstance(value, int) and float in kinds:
                object.__setattr__(self, name, float(value))  # 1 and 1.0 are one setting (and one batch key)
        _check(
            self.temperature is None or self.temperature >= 0,
            "temperature",
            self.temperature,
            "use 0 (or leave it unset) for greedy decoding, a value above 0 to sample",
        )
        _check(
            self.top_p is None or 0 < self.top_p <= 1,
            "top_p",
            self.top_p,
            "top_p is a probability mass in (0, 1]; 1 keeps every token",
        )
        _check(self.top_k is None or self.top_k >= 0, "top_k", self.top_k, "use a whole number; 0 turns it off")
        _check(
            self.repetition_penalty is None or self.repetition_penalty > 0,
            "repetition_penalty",
            self.repetition_penalty,
            "use a value above 0: 1 changes nothing, above 1 discourages repeats",
        )
        _check(
            self.num_beams is None or self.num_beams >= 1,
            "num_beams",
            self.num_beams,
            "use 1 for greedy decoding or sampling, 2 or more for beam search",
        )
        _check(
            self.early_stopping in (None, True, False, "never"),
            "early_stopping",
            self.early_stopping,
            "use true, false or never",
        )

    @classmethod
    def of(cls, value: Decoding | dict[str, Any] | None) -> Decoding:
        """A `Decoding` from a `Decoding`, a dict of its options (unknown names refused), or None."""
        if value is None or isinstance(value, Decoding):
            return value or cls()
        if not isinstance(value, dict):
            raise ConfigError(
                f"decoding must be a Decoding or a dict, got a {type(value).__name__}",
                hint="e.g. decoding=Decoding(num_beams=4) or decoding={'num_beams': 4}",
            )
        refuse_unknown(value, OPTIONS, "decoding")
        return cls(**value)

    def with_options(self, options: dict[str, Any]) -> Decoding:
        """These settings with `options` (only names in OPTIONS are read) laid over them; None unsets."""
        return replace(self, **{k: v for k, v in options.items() if k in OPTIONS})

    def options(self) -> dict[str, Any]:
        """The settings that are set, by name."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @property
    def sampling(self) -> bool:
        return self.do_sample if self.do_sample is not None else (self.temperature or 0) > 0

    @property
    def beams(self) -> int:
        return self.num_beams or 1

    def resolved(self) -> Decoding:
        """The settings a `generate` call runs with: checked as a whole, the unused ones dropped."""
        if self.do_sample and self.temperature == 0:
            raise ConfigError(
                "do_sample=True with temperature=0: sampling needs a temperature above 0",
                hint="pass a temperature such as 0.7 (or leave it unset for 1.0), or do_sample=False "
                "for greedy decoding",
            )
        sample, beams = self.sampling, self.beams
        return Decoding(
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_k=self.top_k if sample else None,
            top_p=self.top_p if sample and self.top_p != 1 else None,
            repetition_penalty=self.repetition_penalty if self.repetition_penalty != 1 else None,
            num_beams=beams,
            length_penalty=self.length_penalty if beams > 1 else None,
            early_stopping=self.early_stopping if beams > 1 else None,
            seed=self.seed if sample else None,  # greedy and beam search are deterministic already
        )

    def generation_config(self, **extra: Any) -> Any:
        """transformers' `GenerationConfig` with these settings (call on a resolved `Decoding`) and `extra`."""
        from transformers import GenerationConfig

        settings = {k: v for k, v in self.options().items() if k != "seed"}
        return GenerationConfig(**settings, **extra)


def check_grammar(decoding: Decoding) -> None:
    """A grammar masks one sequence per row as it grows; beam search reorders rows every step, so it cannot
    run under one."""
    if decoding.beams > 1:
        raise ConfigError(
            f"num_beams={decoding.beams} cannot decode under a grammar (structured output, "
            "json_schema): the grammar follows one sequence per row, beam search keeps several",
            hint="leave num_beams out of structured output (it decodes with num_beams=1 whatever "
            "the model's default); sampling works under a grammar",
        )


def refuse_unknown(names: Any, known: Any, where: str, hint: str | None = None) -> None:
    """ConfigError for names not in `known`, suggesting the closest known name for each."""
    unknown = sorted(set(names) - set(known))
    if not unknown:
        return
    guesses = [
        f"{n!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, list(known), 1)) else repr(n)
        for n in unknown
    ]
    raise ConfigError(f"unknown option(s) for {where}: {', '.join(guesses)}", hint=hint or f"use {HELP}")


def parse_options(text: str) -> dict[str, Any]:
    """`num_beams=4,length_penalty=0.8` (the `--decoding` flag) as typed options."""
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise ConfigError(
                f"--decoding {text!r}: {item!r} is not NAME=VALUE",
                hint="e.g. --decoding num_beams=4,length_penalty=0.8",
            )
        refuse_unknown([name], OPTIONS, "--decoding")
        options[name] = _value(raw)
    return options


def _value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw  # early_stopping=never; any other word fails the type check with its name


def _check(ok: bool, name: str, value: Any, hint: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range", hint=hint)


_TYPES: dict[str, tuple[type, ...]] = {"do_sample": (bool,)}
_TYPES.update({n: (int, float) for n in ("temperature", "top_p", "repetition_penalty", "length_penalty")})
_TYPES.update({n: (int,) for n in ("top_k", "num_beams", "seed")})
_TYPES["early_stopping"] = (bool, str)
_KIND_NAMES: dict[tuple[type, ...], str] = {
    (bool,): "true or false",
    (int, float): "a number",
    (int,): "a whole number",
    (bool, str): "true, false or 'never'",
}
_EXAMPLES = {
    "do_sample": "do_sample=True",
    "temperature": "temperature=0.7",
    "top_p": "top_p=0.9",
    "top_k": "top_k=40",
    "repetition_penalty": "repetition_penalty=1.1",
    "num_beams": "num_beams=4",
    "length_penalty": "length_penalty=0.8",
    "early_stopping": "early_stopping=True",
    "seed": "seed=7",
}


class DecodingFields(BaseModel):
    """The options as a chat model's fields, the LangChain way (`ChatTransformers(num_beams=4)`); None: unset."""

    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    num_beams: int | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    seed: int | None = None

    @property
    def decoding(self) -> Decoding:
        """The model's default decoding settings."""
        return Decoding(**{name: getattr(self, name) for name in OPTIONS})


def fold_options(values: dict[str, Any]) -> dict[str, Any]:
    """A model's constructor arguments with `decoding=` spread into the flat options, all of them checked."""
    values = dict(values)
    grouped = Decoding.of(values.pop("decoding", None)).options()
    if clash := sorted(k for k, v in grouped.items() if k in values and values[k] != v):
        raise ConfigError(
            f"{clash} given both in decoding= and as keyword arguments, with different values",
            hint="give each decoding option once",
        )
    values.update(grouped)
    Decoding.of({k: v for k, v in values.items() if k in OPTIONS}).resolved()
    return values
