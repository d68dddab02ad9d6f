"""Scale-out on Ray (`decompose/distributed.py`): `batch(executor="ray")` and `decompose eval --ray`, on a real
local Ray cluster (two CPUs) shared by the module; the eval runs as the real command, joining that cluster."""

import asyncio
import importlib.util
import json
import os
import sqlite3
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from helpers import REPO, cli, interrupt_eval, plan_json, report

from decompose import Orchestrator, RetryPolicy, ScriptedChatModel
from decompose.errors import ConfigError
from decompose.models.scripted import asks_for_plan, asks_to_combine

pytestmark = pytest.mark.slow

if importlib.util.find_spec("ray") is None:  # ray is imported by the fixture only: `-m "not slow"` never pays it
    if os.environ.get("CI"):
        raise ImportError("ray is not installed, and CI must run these tests: pip install -e '.[test]'")
    pytest.skip("ray is not installed (pip install 'decompose-agents[ray]')", allow_module_level=True)

from decompose.distributed import RayExecutor, RayPool  # noqa: E402  (imports no ray)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module; its address lets a `decompose eval` subprocess join it."""
    import ray
    from ray import cloudpickle

    # The test models below live in this module, which the workers cannot import: send them by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class TimedModel(ScriptedChatModel):
    """Sleeps `delay` per call and appends `pid start end` to `log`: calls in flight across processes."""

    log: str = ""
    delay: float = 0.05

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        start = time.time()
        await asyncio.sleep(self.delay)
        reply = self._reply(messages, kwargs)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {start} {time.time()}\n")
        return self._result(*reply)


def numbered_rules():
    """A two-step plan per question; the answer names the question's number, so order is checkable."""

    def combine(messages):
        return "answer " + messages[-1].content.split("Original question:")[1].split("?")[0].split()[-1]

    return [
        (lambda m: "boom" in m[-1].content, ValueError("the model broke")),
        (asks_for_plan, plan_json("First part?", "Second part, given {1}?")),
        (asks_to_combine, combine),
        (r"First part", "one"),
        (r"Second part", "two"),
    ]


def peak(log_path):
    """Most calls in flight at once, from the intervals the model logged; and the processes that made them."""
    lines = [line.split() for line in Path(log_path).read_text().splitlines()]
    edges = sorted([(float(e), -1) for _, _, e in lines] + [(float(s), 1) for _, s, _ in lines])
    now = most = 0
    for _, step in edges:  # at a tie an end comes first: a slot freed, then taken
        now += step
        most = max(most, now)
    return most, {pid for pid, _, _ in lines}


def test_ray_batch_equals_the_local_batch_in_input_order_and_a_failure_stays_in_its_row(cluster):
    model = ScriptedChatModel(rules=numbered_rules())
    orch = Orchestrator(model)
    questions = [f"What about number {i}?" for i in range(8)]
    questions[3] = "What about boom 3?"
    local = orch.batch(questions)
    calls_here = len(model.calls)
    remote = orch.batch(questions, executor=RayExecutor(workers=2))
    assert len(model.calls) == calls_here  # the workers called their own copies
    assert [r.answer for r in remote] == [None if i == 3 else f"answer {i}" for i in range(8)]
    for mine, theirs in zip(local, remote, strict=True):
        assert theirs.question == mine.question and theirs.answer == mine.answer and theirs.error == mine.error
        assert theirs.usage.to_dict() == mine.usage.to_dict()
        assert (theirs.plan and theirs.plan.spec()) == (mine.plan and mine.plan.spec())
        assert [type(e).__name__ for e in theirs.events] == [type(e).__name__ for e in mine.events]
    assert "the model broke" in remote[3].error and remote[3].answer is None


async def test_abatch_on_ray_and_an_empty_batch(cluster):
    orch = Orchestrator(ScriptedChatModel(rules=numbered_rules()))
    results = await orch.abatch(["What about number 5?", "What about number 6?"], executor="ray")
    assert [r.answer for r in results] == ["answer 5", "answer 6"]
    assert await orch.abatch([], executor="ray") == []


def test_model_calls_in_flight_stay_within_the_bound_across_the_cluster(cluster, tmp_path):
    log = tmp_path / "calls.log"
    log.touch()
    steps = [{"id": i, "question": f"Part {i}?"} for i in range(1, 5)]  # four parallel steps per question
    model = TimedModel(
        log=str(log),
        delay=0.05,
        rules=[(asks_for_plan, json.dumps({"steps": steps})), (asks_to_combine, "done"), (r"Part", "part")],
    )
    orch = Orchestrator(model, max_concurrency=8)
    results = orch.batch([f"Question {i}?" for i in range(10)], max_concurrency=3, executor=RayExecutor(workers=2))
    assert all(r.answer == "done" for r in results)
    most, pids = peak(log)
    assert len(Path(log).read_text().splitlines()) == 10 * 6  # plan + 4 steps + combine, each question
    assert len(pids) == 2  # both workers answered
    assert 2 <= most <= 3  # parallel, and never past the cluster-wide bound


def test_a_pool_keeps_its_workers_between_batches(cluster, tmp_path):
    log = tmp_path / "calls.log"
    log.touch()
    model = TimedModel(log=str(log), delay=0.01, rules=numbered_rules())
    orch = Orchestrator(model)
    with RayPool(orch, workers=2, max_concurrency=4) as pool:
        first = orch.batch([f"What about number {i}?" for i in range(4)], executor=pool)
        _, pids_first = peak(log)
        second = orch.batch([f"What about number {i}?" for i in range(4, 8)], executor=pool)
        with pytest.raises(ConfigError, match="started with 4"):
            orch.batch(["Q?"], executor=pool, max_concurrency=2)
    assert [r.answer for r in first + second] == [f"answer {i}" for i in range(8)]
    _, pids = peak(log)
    assert pids == pids_first and len(pids) == 2  # the same two processes answered both batches
    with pytest.raises(ConfigError, match="closed"):
        orch.batch(["Q?"], executor=pool)


def lookup_tools(conn):
    from langchain_core.tools import tool

    @tool
    def capital(country: str) -> str:
        """The capital of a country."""
        row = conn.execute("SELECT city FROM capitals WHERE country = ?", (country,)).fetchone()
        return row[0] if row else "unknown"

    return [capital]


def make_tool_orchestrator():
    """Builds the Orchestrator on each worker: its tool's database connection is the worker's own."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)  # the tool runs in a thread
    conn.execute("CREATE TABLE capitals (country TEXT, city TEXT)")
    conn.execute("INSERT INTO capitals VALUES ('France', 'Paris')")
    plan = json.dumps({"steps": [{"id": 1, "question": "Capital?", "tool": "capital", "args": {"country": "France"}}]})
    model = ScriptedChatModel(rules=[(asks_for_plan, plan), (asks_to_combine, "It is {1}.")], default="Paris")
    return Orchestrator(model, tools=lookup_tools(conn))


def test_an_orchestrator_that_cannot_travel_is_a_config_error_naming_the_factory(cluster):
    orch = make_tool_orchestrator()
    with pytest.raises(ConfigError) as err:
        orch.batch(["What is the capital of France?"], executor="ray")
    assert "cannot be sent to Ray workers" in str(err.value) and "Connection" in str(err.value)
    assert "RayExecutor(factory=" in err.value.hint
    results = orch.batch(["What is the capital of France?"] * 2, executor=RayExecutor(factory=make_tool_orchestrator))
    assert [r.error for r in results] == [None, None]
    assert [r.plan.steps[0].answer for r in results] == ["Paris", "Paris"]  # the tool ran on the workers


def test_a_factory_that_fails_on_the_worker_and_bad_options_are_config_errors(cluster):
    orch = Orchestrator(ScriptedChatModel(rules=numbered_rules()))
    with pytest.raises(ConfigError, match="could not build the Orchestrator: ConfigError: .*no-such-spec"):
        orch.batch(["Q?"], executor=RayExecutor(factory=partial(Orchestrator, "no-such-spec:x")))
    with pytest.raises(ConfigError, match="need 3 CPUs, the cluster has 2"):
        orch.batch(["Q?"] * 3, executor=RayExecutor(workers=3))
    with pytest.raises(ConfigError, match="unknown executor"):
        orch.batch(["Q?"], executor="spark")
    with pytest.raises(ConfigError, match="already connected to the Ray cluster"):
        orch.batch(["Q?"], executor=RayExecutor(address="127.0.0.1:1"))


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    orch = Orchestrator(ScriptedChatModel(rules=numbered_rules()))
    with pytest.raises(ConfigError, match="Ray is not installed") as err:
        orch.batch(["What about number 1?"], executor="ray")
    assert err.value.hint == "pip install 'decompose-agents[ray]'"
    assert orch.batch(["What about number 1?"])[0].answer == "answer 1"  # the local batch needs no Ray


def test_the_scale_out_benchmark_runs(cluster, capsys):
    from ray import cloudpickle

    spec = importlib.util.spec_from_file_location("ray_batch_bench", REPO / "benchmarks" / "ray_batch.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    cloudpickle.register_pickle_by_value(bench)  # its model class travels to the workers by value
    times = bench.main(["--questions", "6", "--in-flight", "4", "--repeat", "1"])
    assert set(times) == {"in-process batch", "Ray, 1 worker", "Ray, 2 workers"} and all(times.values())
    assert "36 model calls" in capsys.readouterr().out


# ----- decompose eval --ray -------------------------------------------------------------------------------------

EVAL_RULES = (REPO / "examples" / "scripted" / "evalrules.py").read_text() + "\nlatency = 0.2\n"


def test_eval_on_ray_writes_the_report_resumes_after_ctrl_c_and_matches_a_local_eval(cluster, tmp_path):
    (tmp_path / "rules.py").write_text(EVAL_RULES)
    rows = [
        {"id": f"r{i}", "question": f"What is the capital of France, take {i}?", "answer": "Paris"} for i in range(10)
    ]
    rows[4] = {"id": "r4", "question": "Is the broken thing fixed?", "answer": "no"}
    (tmp_path / "many.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "many.jsonl", "--model", "scripted:rules.py", "--ray", cluster, "--concurrency", "2", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out_file = tmp_path / "many.report.jsonl"
    saved = interrupt_eval(args, cwd=tmp_path, env=env, out_file=out_file, timeout=60)
    assert 2 <= len(saved) < 10

    again = cli(*args, "--workers", "2", "--trace", "trace.jsonl", cwd=tmp_path, timeout=120)
    assert again.returncode == 1, again.stderr  # r4 fails: its model breaks
    traced = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert {e["row"] for e in traced} == {f"r{i}" for i in range(10)} - saved  # the workers' events, by row
    assert sum(e["type"] == "PlanReady" for e in traced) == 10 - len(saved)
    summary = json.loads(again.stdout)
    assert summary["resumed"] == len(saved) and summary["ran"] == 10 - len(saved)
    records = {r["id"]: r for r in report(out_file)}
    assert sorted(records) == sorted(f"r{i}" for i in range(10))  # every row, none twice
    assert len(report(out_file)) == 10
    assert records["r4"]["ok"] is False and "model broke" in records["r4"]["error"]

    local = cli(
        "eval",
        "many.jsonl",
        "--model",
        "scripted:rules.py",
        "--out",
        "local.jsonl",
        "--json",
        cwd=tmp_path,
        timeout=120,
    )
    keep = ("prediction", "em", "f1", "ok", "error", "steps", "model_calls", "input_tokens", "output_tokens")
    by_id = {r["id"]: {k: r[k] for k in keep} for r in report(tmp_path / "local.jsonl")}
    assert by_id == {key: {k: r[k] for k in keep} for key, r in records.items()}
    assert {k: v for k, v in json.loads(local.stdout).items() if k not in ("report", "resumed", "ran", "elapsed")} == {
        k: v for k, v in summary.items() if k not in ("report", "resumed", "ran", "elapsed")
    }


def test_eval_with_an_unreachable_ray_address_is_one_clear_line(tmp_path):
    (tmp_path / "rules.py").write_text(EVAL_RULES)
    (tmp_path / "qs.jsonl").write_text('{"question": "What is the capital of France?", "answer": "Paris"}\n')
    started = time.monotonic()
    proc = cli("eval", "qs.jsonl", "--model", "scripted:rules.py", "--ray", "127.0.0.1:1", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in proc.stderr and "ray start --head" in proc.stderr
    assert time.monotonic() - started < 30  # no minute of retries
    assert not (tmp_path / "qs.report.jsonl").read_text()  # nothing recorded that a rerun would skip
    stray = cli("eval", "qs.jsonl", "--model", "scripted:rules.py", "--workers", "2", cwd=tmp_path)
    assert stray.returncode == 2 and "--workers is a number of Ray workers" in stray.stderr


# ----- local models at scale: an OpenAI-compatible server such as `vllm serve` ---------------------------------


@pytest.mark.server
def test_batch_on_ray_against_an_openai_compatible_server_as_vllm_serves(cluster, monkeypatch):
    """`vllm serve Qwen/Qwen2.5-0.5B-Instruct` answers /v1/chat/completions under the model's full name; the
    workers reach it through OPENAI_BASE_URL, and --max-concurrency bounds what the server sees in flight."""
    from fault_server import HTML_PAGE, FaultServer, ok

    class SlowServer(FaultServer):  # a model takes time: lets calls overlap, so the bound is visible
        async def _answer(self, request):
            await asyncio.sleep(0.1)
            return await super()._answer(request)

    def reply(body):
        last = body["messages"][-1]["content"]
        if "proxy" in last:
            return HTML_PAGE
        if '"steps"' in body["messages"][0]["content"]:
            return ok(plan_json("Part one?", "Part two?"))
        return ok("42")

    name = "Qwen/Qwen2.5-0.5B-Instruct"
    with SlowServer() as server:
        server.choose = reply
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        orch = Orchestrator(f"openai:{name}", max_concurrency=2, retry=RetryPolicy(max_attempts=1))
        questions = [f"What is item {i}?" for i in range(6)] + ["Ask the proxy?"]
        results = orch.batch(questions, executor=RayExecutor(workers=2))
    assert [r.answer for r in results[:6]] == ["42"] * 6 and all(r.error is None for r in results[:6])
    assert {hit.body["model"] for hit in server.hits} == {name}
    assert len(server.hits) == 6 * 4 + 1
    assert server.peak_in_flight == 2  # --max-concurrency 2 across both workers
    # The rebuilt client still checks a 200 that is not a completion: the proxy's page is quoted.
    assert "Sign in to continue" in results[6].error
