"""Training a trained `IntentRouter`: sentence vectors from the local model, then a linear classifier.

    from decompose.train.intents import train_intents
    report = train_intents("banking77_train.csv", out="intent-router", per_intent=10)

The CSV has a header with `text` and `category` (banking77's `text,category`; `intent` or `label` also name the
intent column). scikit-learn fits the classifier (`pip install -e ".[local]"`); what is saved is plain numpy
weights, so using the router needs only numpy and the model.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from decompose.errors import ConfigError

TEXT_COLUMNS = ("text", "utterance", "message")
LABEL_COLUMNS = ("category", "intent", "label")
CSV_HINT = "give a CSV with a header row `text,category` and one message and its intent a row (banking77's format)"


@dataclass
class IntentTrainReport:
    out: str
    model: str
    rows: int
    intents: int
    per_intent: int | None
    train_accuracy: float
    encode_s: float
    fit_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_intent_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """(texts, intents) from a CSV; a ConfigError names what is wrong (file, header, row) and how to fix it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"intent training file {path} does not exist", hint=CSV_HINT)
    texts, labels = [], []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            text_col = next((c for c in TEXT_COLUMNS if c in header), None)
            label_col = next((c for c in LABEL_COLUMNS if c in header), None)
            if text_col is None or label_col is None:
                raise ConfigError(
                    f"{path}: the header {','.join(header) or '(empty file)'} has no "
                    f"{'text' if text_col is None else 'category'} column",
                    hint=CSV_HINT,
                )
            names = {h.strip().lower(): h for h in reader.fieldnames or []}
            for line, row in enumerate(reader, start=2):
                text, label = (row.get(names[text_col]) or "").strip(), (row.get(names[label_col]) or "").strip()
                if not text or not label:
                    raise ConfigError(f"{path}, line {line}: {'no text' if not text else 'no category'}", hint=CSV_HINT)
                texts.append(text)
                labels.append(label)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", hint=CSV_HINT) from None
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a readable CSV ({exc})", hint=CSV_HINT) from None
    if len(set(labels)) < 2:
        raise ConfigError(
            f"{path}: {len(texts)} rows with {len(set(labels))} intent(s); a router needs two or more", hint=CSV_HINT
        )
    return texts, labels


def sample_per_intent(
    texts: Sequence[str], labels: Sequence[str], n: int | None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """At most `n` rows of each intent, drawn with `seed` (all rows when n is None), in the file's order."""
    if n is None:
        return list(texts), list(labels)
    by_intent: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_intent.setdefault(label, []).append(i)
    rng = random.Random(seed)
    keep = sorted(i for rows in by_intent.values() for i in rng.sample(rows, min(n, len(rows))))
    return [texts[i] for i in keep], [labels[i] for i in keep]


def fit_linear(features: Any, labels: Sequence[str], *, c: float = 1.0, seed: int = 0) -> tuple[Any, Any, list[str]]:
    """(weights, bias, intents) of a logistic regression on standardised `features`, the scaling folded into the
    weights, so that `features @ weights.T + bias` are the classifier's logits."""
    try:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler
    except ImportError as exc:
        raise ConfigError(
            f"training an intent router needs scikit-learn ({exc})",
            hint='pip install -e ".[local]"  (or: pip install scikit-learn)',
        ) from None
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(features), list(labels))
    # w·((x - mean) / scale) + b = (w / scale)·x + (b - w·(mean / scale))
    coef = clf.coef_ / scaler.scale_
    bias = clf.intercept_ - clf.coef_ @ (scaler.mean_ / scaler.scale_)
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row (for the second class)
        coef, bias = np.vstack([-coef, coef]) / 2, np.concatenate([-bias, bias]) / 2
    return coef.astype(np.float32), bias.astype(np.float32), [str(k) for k in clf.classes_]


def fit_router(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    model: Any = "smollm2",
    encoder: Any = None,
    c: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Any, dict[str, float]]:
    """A `TrainedRouter` fitted on (texts, labels), and timings. `encoder`: a `SentenceEncoder` to reuse.
    `progress`: a line on stderr every 500 vectors (thousands of rows take minutes on a CPU)."""
    import sys

    import numpy as np

    from decompose.intents import SentenceEncoder, TrainedRouter

    encoder = encoder or SentenceEncoder(model)
    started = time.monotonic()
    parts = []
    for start in range(0, len(texts), 500):
        parts.append(encoder.encode(texts[start : start + 500]))
        if progress:
            print(
                f"vectors: {start + len(parts[-1])}/{len(texts)} ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    features = np.concatenate(parts)
    encoded = time.monotonic()
    weights, bias, intents = fit_linear(features, labels, c=c, seed=seed)
    fitted = time.monotonic()
    info = {
        "model": encoder.spec or "(a model object)",
        "trained_on": {"rows": len(texts), "intents": len(intents)},
        "classifier": f"LogisticRegression(C={c}) on standardised vectors",
    }
    router = TrainedRouter(intents, weights, bias, encoder=encoder, info=info)
    predicted = np.array(intents)[(features @ weights.T + bias).argmax(axis=1)]
    train_accuracy = float((predicted == np.array(labels)).mean())
    return router, {"encode_s": encoded - started, "fit_s": fitted - encoded, "train_accuracy": train_accuracy}


def train_intents(
    csv_path: str | Path,
    *,
    out: str | Path = "intent-router",
    per_intent: int | None = None,
    model: str = "smollm2",
    c: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> IntentTrainReport:
    """Train a router on a `text,category` CSV (at most `per_intent` rows of each intent) and save it in `out`."""
    if per_intent is not None and per_intent < 1:
        raise ConfigError(f"per_intent must be at least 1, got {per_intent}")
    texts, labels = sample_per_intent(*read_intent_csv(csv_path), per_intent, seed)
    router, stats = fit_router(texts, labels, model=model, c=c, seed=seed, progress=progress)
    router.info["trained_on"].update({"file": Path(csv_path).name, "per_intent": per_intent, "seed": seed})
    router.save(out)
    return IntentTrainReport(
        out=str(out),
        model=model,
        rows=len(texts),
        intents=len(router.intents),
        per_intent=per_intent,
        train_accuracy=round(stats["train_accuracy"], 4),
        encode_s=round(stats["encode_s"], 1),
        fit_s=round(stats["fit_s"], 1),
    )
