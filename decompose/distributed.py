"""Scale-out on Ray: many questions spread over the processes (and machines) of a Ray cluster.

    orch.batch(questions, executor="ray")                                   # a local cluster, one worker per CPU
    orch.batch(questions, executor=RayExecutor(workers=8, address="ray://head:10001"), max_concurrency=32)
    orch.batch(questions, executor=RayExecutor(factory=make_orchestrator))  # built on each worker instead
    with RayPool(orch, workers=4) as pool: orch.batch(questions, executor=pool)  # workers kept between batches

Each worker is a Ray actor holding its own Orchestrator, answering several questions at once on its event loop.
Results come back in input order; a question that fails has `result.error` and the others still run, as in the
local `batch`. `max_concurrency` (default: the Orchestrator's) bounds the model calls in flight across the whole
cluster: it is split into fixed shares, one per worker, each enforced in its worker like the local batch's bound
(an exact bound with no round trip to a coordinator per call), and the driver gives a worker no more questions at
once than its share.

How the Orchestrator reaches a worker: it is pickled (cloudpickle, so lambdas and closures travel) with each chat
model replaced by its recipe, its class and the fields it was given, and rebuilt on the worker (a live HTTP client
or lock cannot travel; the model makes new ones). A part that cannot travel (a tool holding a database
connection, a model built on an open file) is a `ConfigError` at once, naming the fix: a `factory` that builds
the Orchestrator on each worker. The `OPENAI_*`/`DECOMPOSE_*` variables of this process go with the workers, and
each works in this process's directory when the machine has it, so model specs and relative paths mean the same
there (other variables come from the cluster's own environment).

`RayExecutor` and `RayPool` are executors (`executors.py`): the Orchestrator calls their `answer_all` and knows
nothing of Ray. `decompose eval --ray` runs its rows through `run_jobs` too (`cli/eval_ray.py`). Ray is optional:
`pip install 'decompose-agents[ray]'`; nothing imports it until a batch asks for it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from decompose.errors import ConfigError
from decompose.executors import answer_settled
from decompose.limits import Limits
from decompose.models.fallback import FallbackModel
from decompose.orchestrator import Orchestrator
from decompose.result import Result

INSTALL_HINT = "pip install 'decompose-agents[ray]'"
# What the project reads from the environment: a worker gets this process's values.
ENV_PREFIXES = ("OPENAI_", "DECOMPOSE_", "HF_", "TIKTOKEN_")
ENV_NAMES = ("XDG_CACHE_HOME",)


@dataclass(frozen=True)
class RayExecutor:
    """Where and how a batch runs on Ray. `workers`: actors, one CPU each (default: one per CPU of the cluster, no
    more than the questions or the calls allowed in flight). `address`: the cluster (`HOST:6379`, `ray://HOST:10001`,
    `auto`); None uses the cluster this process is connected to, else `ray.init()` (`$RAY_ADDRESS`, or a new local
    cluster that lives until the process exits). `factory`: a zero-argument callable returning the Orchestrator,
    called on each worker, for an Orchestrator that cannot be copied there."""

    workers: int | None = None
    address: str | None = None
    factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"RayExecutor(workers=) must be a positive number, got {self.workers!r}")
        if self.factory is not None and not callable(self.factory):
            raise ConfigError(
                f"RayExecutor(factory=) must be callable, got {type(self.factory).__name__}",
                hint="pass a function that returns an Orchestrator",
            )

    async def answer_all(
        self, orch: Orchestrator, questions: Sequence[str], *, max_concurrency: int | None, limits: Limits | None
    ) -> list[Result]:
        """The questions on workers started for them and stopped after them."""
        return await asyncio.to_thread(ray_batch, orch, questions, self, max_concurrency=max_concurrency, limits=limits)


def require_ray() -> Any:
    """The `ray` module, or a ConfigError naming the install command."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"Ray is not installed ({exc})", hint=INSTALL_HINT) from None
    return ray


def connect(address: str | None) -> Any:
    """`ray`, connected: to the cluster this process already uses, else to `address` (None: `ray.init()`)."""
    ray = require_ray()
    if ray.is_initialized():
        joined = ray.get_runtime_context().gcs_address
        if address not in (None, "", "auto", "local", joined):
            raise ConfigError(
                f"this process is already connected to the Ray cluster at {joined}, not {address}",
                hint="call ray.shutdown() first, or give no address to use the connected cluster",
            )
        return ray
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ...: Ray's own words, one line
        raise ConfigError(
            f"cannot start or join the Ray cluster at {address or 'a new local cluster'}: "
            f"{' '.join(str(exc).split())[:300]}",
            hint=_ADDRESS_HINT,
        ) from None
    return ray


_ADDRESS_HINT = (
    "start one with `ray start --head` and give its address (HOST:6379, or ray://HOST:10001 for Ray "
    "Client), or give no address for a local cluster"
)


def _check_reachable(address: str) -> None:
    """Fail in seconds, with the address, where `ray.init` would retry for a minute."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ConfigError(f"bad Ray address {address!r}", hint=_ADDRESS_HINT)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}", hint=_ADDRESS_HINT
        ) from None


# ----- shipping the Orchestrator --------------------------------------------------------------------------------


def payload(source: Any) -> bytes:
    """`source` (an Orchestrator or a factory) as bytes a worker can rebuild it from; checked here by rebuilding
    it once, so what cannot travel fails before a worker starts."""
    from ray import cloudpickle

    what = "the Orchestrator" if isinstance(source, Orchestrator) else "the factory"
    fix = (
        "give RayExecutor(factory=...) a module-level function that builds the Orchestrator on each worker"
        if isinstance(source, Orchestrator)
        else "make the factory a module-level function (or a functools.partial of one) the workers can import"
    )
    try:
        data = _dumps(source)
        cloudpickle.loads(data)
    except Exception as exc:
        raise ConfigError(f"{what} cannot be sent to Ray workers: {type(exc).__name__}: {exc}", hint=fix) from None
    return data


def _dumps(obj: Any) -> bytes:
    import io

    from langchain_core.language_models import BaseChatModel
    from ray import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, BaseChatModel):
                return _rebuild_model, (type(obj), _model_fields(obj))
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    Pickler(buffer).dump(obj)
    return buffer.getvalue()


def _model_fields(model: Any) -> dict[str, Any]:
    """The fields a chat model was given, less the live state it rebuilds itself when absent (its HTTP clients:
    fields it excludes from its serialized form); a live value in any other field cannot travel."""
    from ray import cloudpickle

    fields = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if type(model).model_fields.get(name) is not None and type(model).model_fields[name].exclude:
            try:
                cloudpickle.dumps(value)
            except Exception:
                continue
        fields[name] = value
    return fields


def _rebuild_model(cls: type, fields: dict[str, Any]) -> Any:
    from decompose.models import openai as backend

    if issubclass(cls, backend.OpenAICompatible) and "http_client" not in fields:
        # its check of a 200 that is not a completion lives on its HTTP clients: give the new ones the same
        import openai

        fields = {
            **fields,
            "http_client": openai.DefaultHttpxClient(event_hooks={"response": [backend._refuse_non_json]}),
            "http_async_client": openai.DefaultAsyncHttpxClient(event_hooks={"response": [backend._arefuse_non_json]}),
        }
    return cls(**fields)


# ----- the workers -------------------------------------------------------------------------------------------


class _CallSlots(FallbackModel):
    """The worker's Orchestrator's models behind its share of the cluster's bound: every model call (each
    attempt, retries' waits included, as in the local batch) holds a slot. The calls go through `inner`, so a
    FallbackModel subclass keeps its own way of falling back."""

    def __init__(self, inner: FallbackModel, slots: int):
        super().__init__(*inner.models, fallback_on=inner.fallback_on)
        self._inner = inner
        self._slots = asyncio.Semaphore(slots)

    async def call(self, attempt: Callable) -> Any:
        async def held(model: Any) -> Any:
            async with self._slots:
                return await attempt(model)

        return await self._inner.call(held)


class Worker:
    """One Ray actor: builds its Orchestrator, then runs jobs, `async job(orch, *args)`, several at once."""

    def __init__(self, data: bytes, env: dict[str, str], cwd: str, slots: int):
        os.environ.update(env)
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.failure: tuple[str, str] | None = None
        try:
            from ray import cloudpickle

            source = cloudpickle.loads(data)
            orch = source if isinstance(source, Orchestrator) else source()
            if not isinstance(orch, Orchestrator):
                raise ConfigError(
                    f"the factory returned a {type(orch).__name__}, not an Orchestrator",
                    hint="return Orchestrator(...) from the factory",
                )
            self.orch = orch.replace(model=_CallSlots(orch.models, slots))
        except Exception as exc:  # told to the driver by `ready`, as itself, instead of a dead actor
            self.failure = (type(exc).__name__, str(exc))

    def ready(self) -> tuple[str, str] | None:
        return self.failure

    async def run(self, job: Callable, *args: Any) -> Any:
        return await job(self.orch, *args)


class RayPool:
    """Ray workers kept between batches (each batch otherwise starts and stops its own: seconds a worker, to start
    a process, import decompose and build the Orchestrator):

        with RayPool(orch, workers=4, max_concurrency=64) as pool:
            first = orch.batch(questions, executor=pool)
            second = orch.batch(more_questions, executor=pool)

    The workers hold the Orchestrator (or build the factory's) they were started with, and its bound on calls in
    flight, `max_concurrency` (default: the Orchestrator's, else 8)."""

    def __init__(
        self,
        source: Any,
        *,
        workers: int | None = None,
        address: str | None = None,
        max_concurrency: int | None = None,
        size_hint: int | None = None,
    ):
        limit = max_concurrency or getattr(source, "max_concurrency", None) or 8
        if limit < 1:
            raise ConfigError(f"max_concurrency must be at least 1, got {limit}")
        RayExecutor(workers=workers)  # checks the number
        self.ray = ray = connect(address)
        data = payload(source)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        count = min(workers or max(cpus, 1), limit, size_hint or limit) or 1
        if count > cpus:
            raise ConfigError(
                f"{count} Ray workers need {count} CPUs, the cluster has {cpus}",
                hint="ask for fewer workers, or add nodes to the cluster",
            )
        self.limit = limit
        self.shares = [limit // count + (i < limit % count) for i in range(count)]  # they sum to `limit`
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
        actor = ray.remote(num_cpus=1)(Worker)
        self.workers = [actor.remote(data, env, os.getcwd(), share) for share in self.shares]
        try:
            for failure in ray.get([w.ready.remote() for w in self.workers]):
                if failure is not None:
                    kind, message = failure
                    raise ConfigError(
                        f"a Ray worker could not build the Orchestrator: {kind}: {message}",
                        hint="check that the model, tools and files it needs exist on every node",
                    )
        except ConfigError:
            self.close()
            raise
        except BaseException as exc:  # the actor died starting (decompose or a dependency missing on a node)
            self.close()
            if not isinstance(exc, Exception):
                raise
            raise ConfigError(
                f"a Ray worker did not start: {one_line(exc)[:300]}",
                hint="install this package, with the same version, on every node",
            ) from None

    def run(self, jobs: Sequence[tuple[Callable, tuple]]) -> Iterator[tuple[int, Any]]:
        """Run each `(job, args)`, `async job(orch, *args)`, on the workers; yield `(index, value)` as each
        finishes (the value is the exception when its worker died)."""
        if not self.workers:
            raise ConfigError("this RayPool is closed", hint="start a new one")
        return _dispatch(self.ray, self.workers, self.shares, jobs)

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []

    async def answer_all(
        self, orch: Orchestrator, questions: Sequence[str], *, max_concurrency: int | None, limits: Limits | None
    ) -> list[Result]:
        """The questions on this pool's workers (which hold the Orchestrator they were started with)."""
        return await asyncio.to_thread(ray_batch, orch, questions, self, max_concurrency=max_concurrency, limits=limits)

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_jobs(
    source: Any, jobs: Sequence[tuple[Callable, tuple]], executor: RayExecutor | RayPool, limit: int | None
) -> Iterator[tuple[int, Any]]:
    """`RayPool.run` on the given pool, or on one started for these jobs and stopped after them (also on Ctrl-C
    or an early stop: nothing is left running on the cluster)."""
    if isinstance(executor, RayPool):
        if limit is not None and limit != executor.limit:
            raise ConfigError(
                f"max_concurrency={limit}, but the RayPool was started with {executor.limit}",
                hint="give the bound to RayPool(max_concurrency=...)",
            )
        yield from executor.run(jobs)
        return
    pool = RayPool(
        executor.factory or source,
        workers=executor.workers,
        address=executor.address,
        max_concurrency=limit,
        size_hint=len(jobs),
    )
    try:
        yield from pool.run(jobs)
    finally:
        pool.close()


def _dispatch(
    ray: Any, workers: list, shares: list[int], jobs: Sequence[tuple[Callable, tuple]]
) -> Iterator[tuple[int, Any]]:
    pending, load = deque(enumerate(jobs)), [0] * len(workers)
    running: dict[Any, tuple[int, int]] = {}  # ref -> (job index, worker index)
    try:
        while pending or running:
            while pending:  # the least loaded worker with room takes the next job
                free, i = max((shares[i] - load[i], i) for i in range(len(workers)))
                if free <= 0:
                    break
                index, (job, args) = pending.popleft()
                running[workers[i].run.remote(job, *args)] = (index, i)
                load[i] += 1
            refs = list(running)
            ray.wait(refs, num_returns=1)
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # every job finished by now, in one pass
            for ref in done:
                index, i = running.pop(ref)
                load[i] -= 1
                try:
                    value = ray.get(ref)
                except Exception as exc:  # the worker died or the job raised: this job's outcome, not the batch's
                    value = exc
                yield index, value
    finally:  # stopped early (Ctrl-C, a refused model): what still runs is cancelled, a kept pool stays usable
        for ref in running:
            ray.cancel(ref)


# ----- batch ----------------------------------------------------------------------------------------------------


def ray_batch(
    orch: Orchestrator,
    questions: Iterable[str],
    executor: RayExecutor | RayPool,
    *,
    max_concurrency: int | None = None,
    limits: Limits | None = None,
) -> list[Result]:
    """`Orchestrator.batch(..., executor="ray")`: the Results in input order, each failure in its `error`."""
    questions = list(questions)
    if not questions:
        return []
    results: list[Any] = [None] * len(questions)
    jobs = [(answer_question, (q, limits)) for q in questions]
    limit = max_concurrency or (None if isinstance(executor, RayPool) else orch.max_concurrency)
    for index, value in run_jobs(orch, jobs, executor, limit):
        if not isinstance(value, Result):
            value = Result.failed(str(questions[index]), f"the Ray worker failed: {one_line(value)}")
        results[index] = value
    return results


async def answer_question(orch: Orchestrator, question: str, limits: Limits | None) -> Result:
    """One question on a worker, as the local batch answers it: a failure is the Result's `error`."""
    try:
        return await answer_settled(orch, question, limits=limits)
    except Exception as exc:  # a bug in a tool or model: that question's error, the batch goes on
        return Result.failed(str(question), f"{type(exc).__name__}: {exc}")


def one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
