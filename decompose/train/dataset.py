"""`decompose train --build-data SOURCE`: the training and held-out files, from the public decompositions in
SOURCE (GSM8K and StrategyQA training sets, see `convert`) and the synthetic tool plans (see `templates`).

Only the sources' training files are read. The held-out file holds every held-out template's rows, new draws of
the training templates (other numbers, names and ids; a question also in the training file is left out), and
one converted row in `held_out_every`, so no question is in both files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from decompose.train.convert import gsm8k_example, strategyqa_example
from decompose.train.data import Example, TrainDataError, iter_jsonl, write_examples
from decompose.train.templates import synthetic_examples

SOURCES = {"gsm8k_train.jsonl": gsm8k_example, "strategyqa_train.jsonl": strategyqa_example}


@dataclass
class BuiltData:
    train: Path
    held_out: Path
    train_rows: int
    held_out_rows: int


def build_dataset(
    source: str | Path,
    out: str | Path,
    *,
    synthetic: int = 60,
    gsm8k: int | None = None,
    strategyqa: int | None = None,
    held_out_every: int = 20,
    seed: int = 0,
) -> BuiltData:
    """Write `out/train.jsonl` and `out/heldout.jsonl`. `synthetic`: rows per template; `gsm8k`, `strategyqa`:
    at most this many converted rows of each (None: all)."""
    source, out = Path(source), Path(out)
    missing = [name for name in SOURCES if not (source / name).is_file()]
    if missing:
        raise TrainDataError(
            f"{source} has no {missing[0]}",
            hint="pass the folder of training sets (its README lists gsm8k_train.jsonl, ...)",
        )
    limits = {"gsm8k_train.jsonl": gsm8k, "strategyqa_train.jsonl": strategyqa}
    train: list[Example] = list(synthetic_examples(synthetic, seed=seed))
    # Held-out customers and orders are the demo shop's, so running a plan can check its answer.
    held_out: list[Example] = list(
        synthetic_examples(max(1, synthetic // 4), held_out=True, seed=seed + 1, shop_share=1.0)
    )
    seen = {example.question for example in train}
    held_out += [
        e for e in synthetic_examples(max(1, synthetic // 4), seed=seed + 2, shop_share=1.0) if e.question not in seen
    ]
    for name, convert in SOURCES.items():
        for index, example in enumerate(itertools.islice(_converted(source / name, convert), limits[name])):
            (held_out if index % held_out_every == held_out_every - 1 else train).append(example)
    return BuiltData(
        out / "train.jsonl",
        out / "heldout.jsonl",
        write_examples(out / "train.jsonl", train),
        write_examples(out / "heldout.jsonl", held_out),
    )


def _converted(path: Path, convert) -> Iterator[Example]:
    for row in iter_jsonl(path):
        if (example := convert(row)) is not None:
            yield example
