"""Output tokens/s of concurrent requests on a local model: batched into one `generate` vs one at a time.

    python benchmarks/local_batching.py [--device cpu|cuda] [--tokens 64] [--requests 8] [--repeats 3] [--raw]
                                        [--fixed-length]

`measure(run_concurrent_fn, run_sequential_fn)` times any two zero-argument callables (plain or async) that
return the number of output tokens they produced — or (tokens, seconds) when they time themselves.

Three paths are measured: the orchestrator (an 8-step plan whose steps are independent, executed with
max_concurrency=8 vs 1; timed from the first step's start to the last step's end, so the one synthesis call is
left out), the chat model's `ainvoke` (8 concurrent calls vs awaited one at a time) and, with --raw, bare
transformers `generate()` (one padded batch vs one prompt at a time): the ceiling.

A padded batch does not always pick the same tokens as one prompt alone (rounding differs, most in bf16), so a
row may end early in one run and not in the other, and the two runs then did different work. `--fixed-length`
makes every request write exactly --tokens tokens (end-of-text is held back until then, through the model's
generation config: the code path is unchanged), so tokens/s compares equal work.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Describe, step by step, how a car engine works.",
    "Write a detailed travel guide for a week in Japan.",
    "Explain the history of the Roman Empire in detail.",
    "Write a long poem about autumn leaves and rain.",
    "Describe how to plan and plant a vegetable garden.",
    "Explain in detail how computers store and process data.",
    "Write a long letter to a friend about a recent trip to the mountains.",
]


def _timed(fn: Callable[[], Any]) -> tuple[int, float]:
    started = time.perf_counter()
    result = fn()
    result = asyncio.run(result) if inspect.isawaitable(result) else result
    return result if isinstance(result, tuple) else (result, time.perf_counter() - started)


def _rate(run: tuple[int, float]) -> float:
    return run[0] / run[1]


def measure(
    run_concurrent_fn: Callable[[], Any], run_sequential_fn: Callable[[], Any], repeats: int = 1
) -> dict[str, float]:
    """Run both (each returns its output token count), print tokens/s both ways and the speed-up.

    With `repeats` > 1 the two alternate and the best run of each counts: on a shared machine the
    slow runs measure the neighbours, not the code.
    """
    runs = [(_timed(run_sequential_fn), _timed(run_concurrent_fn)) for _ in range(repeats)]
    (seq_tokens, seq_s), (con_tokens, con_s) = (max((r[i] for r in runs), key=_rate) for i in (0, 1))
    stats = {"sequential_tps": seq_tokens / seq_s, "concurrent_tps": con_tokens / con_s}
    stats["ratio"] = stats["concurrent_tps"] / stats["sequential_tps"]
    print(f"one at a time: {seq_tokens} tokens in {seq_s:.2f} s = {stats['sequential_tps']:.1f} tokens/s")
    print(f"concurrent:    {con_tokens} tokens in {con_s:.2f} s = {stats['concurrent_tps']:.1f} tokens/s")
    print(f"speed-up: {stats['ratio']:.2f}x" + (f" (best of {repeats})" if repeats > 1 else ""))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when present, else cpu)")
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per request")
    parser.add_argument("--requests", type=int, default=8, help="concurrent requests")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; the best of each counts")
    parser.add_argument("--model", default="smollm2", help="a load_model spec, e.g. hf:/path/to/model")
    parser.add_argument("--raw", action="store_true", help="also measure bare transformers generate()")
    parser.add_argument(
        "--fixed-length",
        action="store_true",
        help="every request writes exactly --tokens tokens, so both ways do the same work",
    )
    args = parser.parse_args()

    import torch

    from decompose.models import load_model

    model = load_model(args.model, device=args.device, max_new_tokens=args.tokens, max_batch_size=args.requests)
    print(
        f"model {args.model} on {model.hf_model.device}, {model.hf_model.dtype}, "
        f"{torch.get_num_threads()} torch threads, {args.requests} requests x {args.tokens} new tokens"
        + (" (fixed length)" if args.fixed_length else " at most")
    )
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.requests)]
    model.invoke(prompts[0], max_new_tokens=4)  # warm-up: first-call allocations are not what we measure
    if args.fixed_length:  # transformers fills what our per-call GenerationConfig leaves unset from this one
        model.hf_model.generation_config.min_new_tokens = args.tokens

    async def concurrent() -> int:
        replies = await asyncio.gather(*(model.ainvoke(p) for p in prompts))
        return sum(r.usage_metadata["output_tokens"] for r in replies)

    async def sequential() -> int:
        return sum([(await model.ainvoke(p)).usage_metadata["output_tokens"] for p in prompts])

    print(f"orchestrator, a plan of {args.requests} independent steps, max_concurrency={args.requests} vs 1:")
    measure(*_orchestrator_runs(model, prompts), args.repeats)
    print("chat model ainvoke, batched by the model vs awaited one at a time:")
    before = model.batch_sizes
    measure(concurrent, sequential, args.repeats)
    print(f"generate calls by batch size: {dict(model.batch_sizes - before)}")
    if args.raw:
        print("bare transformers generate(), one padded batch vs one prompt at a time:")
        measure(*_raw_runs(model, prompts, args.tokens), args.repeats)


def _orchestrator_runs(model: Any, prompts: list[str]) -> tuple[Callable[[], Any], Callable[[], Any]]:
    from decompose import Decomposer, Orchestrator
    from decompose.events import StepFinished, StepStarted

    plan = {"steps": [{"id": i, "question": p} for i, p in enumerate(prompts, 1)]}

    async def execute(concurrency: int) -> tuple[int, float]:
        events: list = []
        orch = Orchestrator(model, max_concurrency=concurrency, decomposer=Decomposer(max_steps=len(prompts)))
        await orch.aexecute(plan, on_event=events.append)
        starts = [e.t for e in events if isinstance(e, StepStarted)]
        ends = [e for e in events if isinstance(e, StepFinished)]
        tokens = sum(e.usage["output"] for e in ends if e.usage)
        return tokens, max(e.t for e in ends) - min(starts)

    return (lambda: execute(len(prompts))), (lambda: execute(1))


def _raw_runs(model: Any, prompts: list[str], tokens: int) -> tuple[Callable[[], int], Callable[[], int]]:
    """The same work without the chat model: the ceiling the batcher is measured against."""
    import copy

    import torch

    hf, tok = model.hf_model, copy.copy(model.tokenizer)
    if tok.pad_token is None:  # SmolLM2's GGUF names no pad token; padding a batch needs one
        tok.pad_token = tok.eos_token
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]

    @torch.inference_mode()
    def generate(batch: list[str]) -> int:
        enc = tok(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(hf.device)
        out = hf.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return (out.shape[1] - enc.input_ids.shape[1]) * len(batch)

    return (lambda: generate(texts)), (lambda: sum(generate([t]) for t in texts))


if __name__ == "__main__":
    main()
