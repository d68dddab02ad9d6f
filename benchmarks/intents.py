"""Intent recognition on banking77 (77 intents): the trained router (SmolLM2 sentence vectors + logistic
regression) with 10 and 30 examples per intent and with the whole training set, and the zero-shot router (the
embedded model choosing a name under structured output), beside the dataset paper's published figures.

    python benchmarks/intents.py --data ../shared/data/train          # all of it: 13083 vectors, 77x5 zero-shot
    python benchmarks/intents.py --test-per-intent 10 --per-intent 10 30 --seeds 1 --no-full --zero-shot-per-intent 0
    python benchmarks/intents.py --skip-trained --zero-shot-per-intent 1    # zero-shot on the first row per intent

Cost on a CPU: one vector takes 0.2-0.5 s on this project's shared 2-core machine (all of banking77: 1-2 h), a
zero-shot answer tens of seconds (the prompt lists all 77 names). Vectors are cached in --cache (default
.benchmarks/intents) after every 250, so an interrupted run resumes and a rerun only refits the classifiers.
The test set is only ever scored, never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decompose.train.intents import fit_linear, read_intent_csv, sample_per_intent  # noqa: E402

# Casanueva et al., 2020, "Efficient Intent Detection with Dual Sentence Encoders", Table 3 (banking77 test acc.).
PUBLISHED = [
    ("BERT-Large fine-tuned (paper)", "full", 93.66),
    ("USE+ConveRT + MLP (paper)", "full", 93.36),
    ("USE+ConveRT + MLP (paper)", "10 per intent", 85.19),
]


class VectorCache:
    """Sentence vectors by text, saved after every chunk: an interrupted run resumes, and any subset of the
    data is encoded once (the same vectors whichever run asks for them)."""

    def __init__(self, encoder, folder: Path):
        self.encoder = encoder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"vectors-{encoder.spec}-{encoder.max_length}.npz"
        self.known: dict[str, np.ndarray] = {}
        self.seconds, self.encoded = 0.0, 0
        if self.path.is_file():
            data = np.load(self.path)
            self.known = dict(zip(data["texts"].tolist(), data["x"]))
            self.seconds, self.encoded = float(data["seconds"]), int(data["encoded"])

    def get(self, texts: list[str], what: str) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.known))
        for start in range(0, len(missing), 250):
            chunk = missing[start : start + 250]
            started = time.monotonic()
            self.known.update(zip(chunk, self.encoder.encode(chunk)))
            self.seconds += time.monotonic() - started
            self.encoded += len(chunk)
            np.savez(
                self.path,
                texts=np.array(list(self.known)),
                x=np.stack(list(self.known.values())),
                seconds=self.seconds,
                encoded=self.encoded,
            )
            print(
                f"{what}: {start + len(chunk)}/{len(missing)} new vectors "
                f"({self.seconds / self.encoded:.3f} s each so far)",
                flush=True,
            )
        return np.stack([self.known[t] for t in texts])


def accuracy(weights, bias, intents, x, gold) -> float:
    predicted = np.array(intents)[(x @ weights.T + bias).argmax(axis=1)]
    return float((predicted == np.array(gold)).mean())


def route_accuracy(weights, bias, intents, x, gold) -> float:
    """How often the predicted intent falls in the gold intent's customer-service route (what routing uses)."""
    from decompose.routing import CUSTOMER_SERVICE_ROUTES, IntentRouting

    routing = IntentRouting(None, CUSTOMER_SERVICE_ROUTES)  # only its intent → route mapping is used
    predicted = np.array(intents)[(x @ weights.T + bias).argmax(axis=1)]
    return float(np.mean([routing.route_for(p).name == routing.route_for(g).name for p, g in zip(predicted, gold)]))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/train", help="folder with banking77_train.csv / _test.csv")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--cache", default=".benchmarks/intents")
    ap.add_argument("--seeds", type=int, default=3, help="draws of each per-intent training set (default 3)")
    ap.add_argument(
        "--per-intent", type=int, nargs="*", default=[10, 30], help="training rows per intent (default 10 30)"
    )
    ap.add_argument("--no-full", dest="full", action="store_false", help="skip training on the whole training set")
    ap.add_argument(
        "--test-per-intent",
        type=int,
        default=0,
        help="score on the first N test rows of each intent (default 0: the whole test set)",
    )
    ap.add_argument(
        "--zero-shot-per-intent",
        type=int,
        default=5,
        help="zero-shot on the first N test rows of each intent (0: skip; default 5)",
    )
    ap.add_argument("--skip-trained", action="store_true", help="only the zero-shot router")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args(argv)

    from decompose.intents import IntentRouter, SentenceEncoder

    data = Path(args.data)
    train_path, test_path = data / "banking77_train.csv", data / "banking77_test.csv"
    train_x_text, train_y = read_intent_csv(train_path)
    test_text, test_y = read_intent_csv(test_path)
    rows = []
    if args.test_per_intent:
        test_text, test_y = sample_first(test_text, test_y, args.test_per_intent)
    test_name = f"first {args.test_per_intent} per intent ({len(test_y)})" if args.test_per_intent else "all (3080)"
    if not args.skip_trained:
        vectors = VectorCache(SentenceEncoder(args.model), Path(args.cache))
        xte = vectors.get(test_text, "test")

        def report(training: str, accs: list[float], **extra) -> None:
            rows.append(
                {
                    "router": f"trained ({args.model} vectors + logistic regression)",
                    "training": training,
                    "test_rows": test_name,
                    "accuracy": float(np.mean(accs)),
                    "range": [round(min(accs), 1), round(max(accs), 1)],
                    **extra,
                }
            )
            print(rows[-1], flush=True)

        for n in args.per_intent:
            accs, routes = [], []
            for seed in range(args.seeds):
                texts, labels = sample_per_intent(train_x_text, train_y, n, seed)
                w, b, intents = fit_linear(vectors.get(texts, f"train, {n} per intent"), labels, seed=seed)
                accs.append(100 * accuracy(w, b, intents, xte, test_y))
                routes.append(100 * route_accuracy(w, b, intents, xte, test_y))
            report(f"{n} per intent ({len(texts)}), {args.seeds} draw(s)", accs, route_accuracy=float(np.mean(routes)))
        if args.full:
            xtr = vectors.get(train_x_text, "train, all")
            started = time.monotonic()
            w, b, intents = fit_linear(xtr, train_y)
            report(
                f"full ({len(train_y)})",
                [100 * accuracy(w, b, intents, xte, test_y)],
                fit_s=round(time.monotonic() - started, 1),
                route_accuracy=100 * route_accuracy(w, b, intents, xte, test_y),
            )
        print(f"vectors: {vectors.seconds / max(vectors.encoded, 1):.3f} s each on this machine", flush=True)

    if args.zero_shot_per_intent > 0:
        from decompose.intents import base_model  # the chat model's own weights, without a planner adapter

        subset_text, subset_y = sample_first(test_text, test_y, args.zero_shot_per_intent)
        correct = 0
        router = IntentRouter.zero_shot(base_model(args.model), sorted(set(train_y)))
        started = time.monotonic()
        found = []
        for start in range(0, len(subset_text), 8):  # in batches, with progress: this is the slow part
            found += router.classify_many(subset_text[start : start + 8])
            correct = sum(f.intent == y for f, y in zip(found, subset_y))
            print(
                f"zero-shot: {len(found)}/{len(subset_text)} rows, {correct} right, {time.monotonic() - started:.0f} s",
                flush=True,
            )
        seconds = time.monotonic() - started
        fallback = sum(f.intent == router.fallback for f in found)
        rows.append(
            {
                "router": f"zero-shot ({args.model}, structured output)",
                "training": "none",
                "test_rows": f"first {args.zero_shot_per_intent} per intent ({len(subset_y)})",
                "accuracy": 100 * correct / len(subset_y),
                "fallback_replies": fallback,
                "s_per_row": round(seconds / len(subset_y), 2),
            }
        )
        print(rows[-1], flush=True)

    print("\n| router | training data | test rows | accuracy |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['router']} | {r['training']} | {r['test_rows']} | {r['accuracy']:.1f} % |")
    for name, training, acc in PUBLISHED:
        print(f"| {name} | {training} | 3080 | {acc:.2f} % |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def sample_first(texts: list[str], labels: list[str], n: int) -> tuple[list[str], list[str]]:
    """The first `n` rows of each intent, in file order: a fixed subset anyone can reproduce."""
    seen: dict[str, int] = {}
    out_t, out_y = [], []
    for t, y in zip(texts, labels):
        if seen.get(y, 0) < n:
            seen[y] = seen.get(y, 0) + 1
            out_t.append(t)
            out_y.append(y)
    return out_t, out_y


if __name__ == "__main__":
    main()
