"""Supervised fine-tuning of a local decomposer with LoRA (peft + Transformers' `Trainer`).

Each row becomes the compact prompt (question + tool signatures) followed by its plan; the loss covers only
the plan's tokens. Checkpoints land in `OUT/checkpoints`, so an interrupted run continues with `resume=True`;
the adapter, with `decompose_adapter.json` (what it was trained on), lands in `OUT`. CPU trains in fp32,
CUDA in bf16, as the model loads. Afterwards a held-out split is scored (see `score.py`).

Imports torch and transformers: `decompose.train` loads this module only when `train` is used.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from langchain_core.tools import BaseTool
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from decompose.errors import ConfigError
from decompose.models.adapter import INFO_FILE, quiet_peft
from decompose.models.hf import chat_prompt_ids
from decompose.train.data import Example, pack_tools, read_examples
from decompose.train.prompt import PROMPT_NAME, compact_messages, plan_target
from decompose.train.score import Scores, score_plans, spread

IGNORE = -100  # the label Transformers' loss skips: the prompt's tokens


@dataclass
class TrainReport:
    adapter: str
    device: str
    examples: int  # rows trained on
    too_long: int  # rows left out: longer than max_length tokens
    steps: int
    resumed_at: int  # the step a resumed run started from (0: a new run)
    tokens_per_s: float
    seconds: float
    first_loss: float | None
    last_loss: float | None
    scores: Scores | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scores"] = self.scores.to_dict() if self.scores else None
        return data


def train(
    data: str | Path,
    *,
    model: str = "smollm2",
    out: str | Path = "decomposer-adapter",
    held_out: str | Path | None = None,
    held_out_fraction: float = 0.05,
    score_limit: int | None = 100,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    lora_rank: int = 8,
    max_length: int = 512,
    save_steps: int = 50,
    seed: int = 0,
    resume: bool = False,
    tools: Sequence[BaseTool] = (),
    progress: bool = True,
) -> TrainReport:
    """Fine-tune `model` (`smollm2` or `hf:PATH`) on the JSONL `data` and write a LoRA adapter to `out`.

    `held_out`: a JSONL scored after training; without it, `held_out_fraction` of `data` is set aside (0: no
    scoring). At most `score_limit` held-out rows, spread over the file, are scored (None: all). `tools`: tools
    beyond the packs' that rows may name. `resume`: continue from the last checkpoint in `out/checkpoints`.
    """
    if not (epochs > 0 and learning_rate > 0 and batch_size >= 1):
        raise ConfigError(
            f"epochs ({epochs}), learning_rate ({learning_rate}) and batch_size ({batch_size}) must be above 0",
            hint="e.g. --epochs 1 --learning-rate 5e-4 --batch-size 8",
        )
    known = {**pack_tools(), **{t.name: t for t in tools}}
    examples = read_examples(data, tools)
    if held_out is not None:
        scored = read_examples(held_out, tools)
    else:
        examples, scored = _split(examples, held_out_fraction, seed)
    scored = spread(scored, score_limit)
    out = Path(out)
    checkpoints = out / "checkpoints"
    last = _last_checkpoint(checkpoints, resume)

    chat = _local_model(model)
    rows = [r for r in (encode(e, chat.tokenizer, known, max_length) for e in examples) if r is not None]
    if not rows:
        raise ConfigError(
            f"every row of {data} is longer than max_length={max_length} tokens", hint="raise max_length (--max-length)"
        )
    peft_model = _with_lora(chat.hf_model, lora_rank)
    meter = LossMeter(show=progress)
    trainer = _trainer(
        peft_model,
        rows,
        chat.tokenizer,
        checkpoints,
        meter,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        save_steps=save_steps,
        seed=seed,
    )
    trainer.train(resume_from_checkpoint=str(last) if last else None)

    peft_model.save_pretrained(str(out))
    report = TrainReport(
        adapter=str(out),
        device=str(peft_model.device),
        examples=len(rows),
        too_long=len(examples) - len(rows),
        steps=trainer.state.global_step,
        resumed_at=meter.start_step,
        tokens_per_s=round(meter.tokens_per_s, 1),
        seconds=round(meter.seconds, 1),
        first_loss=meter.first,
        last_loss=meter.last,
        scores=None,
    )
    settings = {
        "base": model,
        "data": str(data),
        "seed": seed,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "lora_rank": lora_rank,
    }
    write_adapter_info(out, settings, report)  # before scoring: the adapter is usable even if scoring fails
    if scored:
        report.scores = _score(chat, peft_model.merge_and_unload(), out, scored, known)
        write_adapter_info(out, settings, report)
    return report


def encode(example: Example, tokenizer: Any, known: dict[str, BaseTool], max_length: int) -> dict[str, list] | None:
    """Token ids of prompt + plan, with labels only on the plan (and its end token); None when too long."""
    prompt = chat_prompt_ids(tokenizer, compact_messages(example.question, [known[n] for n in example.tools]))
    target = tokenizer.encode(plan_target(example.plan), add_special_tokens=False) + [tokenizer.eos_token_id]
    if len(prompt) + len(target) > max_length:
        return None
    return {"input_ids": prompt + target, "labels": [IGNORE] * len(prompt) + target}


class Collator:
    """Pads a batch on the right: pad ids in the input, IGNORE in the labels, zeros in the attention mask."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        gaps = [width - len(r["input_ids"]) for r in rows]
        return {
            "input_ids": torch.tensor([r["input_ids"] + [self.pad_id] * g for r, g in zip(rows, gaps)]),
            "labels": torch.tensor([r["labels"] + [IGNORE] * g for r, g in zip(rows, gaps)]),
            "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * g for r, g in zip(rows, gaps)]),
        }


def _split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    if not 0 <= fraction < 1:
        raise ConfigError(f"held_out_fraction must be from 0 up to 1, got {fraction}", hint="e.g. 0.05")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cut = round(len(examples) * fraction)
    return [examples[i] for i in sorted(order[cut:])], [examples[i] for i in sorted(order[:cut])]


def _last_checkpoint(folder: Path, resume: bool) -> Path | None:
    found = (
        sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or 0))
        if folder.is_dir()
        else []
    )
    if found and not resume:
        raise ConfigError(
            f"{folder} holds checkpoints of an earlier run",
            hint="pass --resume to continue it, or another --out for a new run",
        )
    return found[-1] if found else None


def _local_model(spec: str) -> Any:
    from decompose.models import load_model
    from decompose.models.hf import ChatTransformers

    chat = load_model(spec, adapter="none")  # a new adapter is trained on the base weights
    if not isinstance(chat, ChatTransformers):
        raise ConfigError(
            f"training needs a local model, not {spec!r}", hint="use 'smollm2' (the embedded model) or 'hf:PATH'"
        )
    return chat


def _with_lora(model: Any, rank: int) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("training needs the peft package", hint="pip install peft") from None
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    with quiet_peft():
        return get_peft_model(model, config)


def _trainer(
    model: Any,
    rows: list[dict],
    tokenizer: Any,
    checkpoints: Path,
    meter: LossMeter,
    *,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    learning_rate: float,
    save_steps: int,
    seed: int,
) -> Any:
    cuda = torch.cuda.is_available() and model.device.type == "cuda"
    steps = max_steps or max(1, round(len(rows) / batch_size * epochs))
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        max_steps=max_steps or -1,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 20),
        logging_steps=1,
        save_steps=save_steps,
        save_total_limit=2,
        bf16=cuda,
        use_cpu=not cuda,
        seed=seed,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        train_sampling_strategy="group_by_length",
    )  # rows of like length share a batch: less padding to compute
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=Collator(pad), callbacks=[meter])
    trainer.remove_callback(PrinterCallback)  # the meter shows progress; printed log dicts are noise
    return trainer


def _score(chat: Any, merged: Any, out: Path, scored: list[Example], known: dict[str, BaseTool]) -> Scores:
    from decompose.models.hf import ChatTransformers

    merged.eval()
    trained = ChatTransformers(
        model_path=chat.model_path,
        hf_model=merged,
        tokenizer=chat.tokenizer,
        adapter=str(out),
        plan_prompt=PROMPT_NAME,
        max_batch_size=16,
    )
    scores, records = score_plans(trained, scored, known)
    (out / "held_out_scores.json").write_text(json.dumps(scores.to_dict(), indent=2) + "\n", encoding="utf-8")
    with (out / "held_out_plans.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return scores


def write_adapter_info(out: Path, settings: dict[str, Any], report: TrainReport) -> None:
    """`decompose_adapter.json`: the prompt the adapter was trained on (which the Decomposer then uses),
    and what it takes to make it again."""
    info = {"prompt": PROMPT_NAME, **settings, "made_by": "decompose train", "report": report.to_dict()}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


class LossMeter(TrainerCallback):
    """Records the loss and throughput of a run; with `show`, draws them under a rich progress bar."""

    def __init__(self, show: bool):
        self.show = show
        self.first: float | None = None
        self.last: float | None = None
        self.tokens_per_s = 0.0
        self.seconds = 0.0
        self.start_step = 0
        self._bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self._start, self._start_tokens = time.monotonic(), state.num_input_tokens_seen
        self.start_step = state.global_step  # after a resume: the checkpoint's step
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            # On stderr: stdout stays the command's result (the scores, or --json).
            console = Console(stderr=True)
            self._log_lines = not console.is_terminal  # a bar redrawn in a log file shows nothing until the end
            self._bar = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task(
                "train", total=state.max_steps, completed=state.global_step, loss="…", speed="…"
            )
            self._bar.start()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
        if logs and "loss" in logs:
            self.last = round(float(logs["loss"]), 4)
            self.first = self.last if self.first is None else self.first

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        self.seconds = time.monotonic() - self._start
        self.tokens_per_s = (state.num_input_tokens_seen - self._start_tokens) / max(self.seconds, 1e-9)
        if self._bar:
            loss = f"{self.last:.3f}" if self.last is not None else "…"
            self._bar.update(self._task, completed=state.global_step, loss=loss, speed=f"{self.tokens_per_s:.0f}")
            if self._log_lines and (state.global_step % 10 == 0 or state.global_step == state.max_steps):
                self._bar.console.print(
                    f"step {state.global_step}/{state.max_steps}  loss {loss}  "
                    f"{self.tokens_per_s:.0f} tok/s  {self.seconds:.0f} s"
                )

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self._bar:
            self._bar.stop()
