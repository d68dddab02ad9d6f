"""Load: `decompose serve` as a real process under many concurrent streaming clients, then killed with kill -9 under
load and restarted on the same database.

    python benchmarks/serve_load.py                         # 200 clients, 5 messages each, 100 ms a model call
    python benchmarks/serve_load.py --clients 20 --latency-ms 10 --messages 2   # a quick one
    python benchmarks/serve_load.py --no-kill --db sqlite:///load.sqlite3
    python benchmarks/serve_load.py --replicas 2 --collide --no-kill   # two servers on one file, racing messages

The server runs a scripted model that sleeps `--latency-ms` per call, with a plan of three steps (two at once,
then one that uses both): five model calls a turn, four on the critical path. Each client opens a conversation,
sends `--messages` messages one after another (the next once the previous is answered) and reads each stream to
its `result`; it also streams `--runs` POST /v1/runs. Every message carries a tag of its own.

Phase "load": printed are p50/p99 time to the first event (the `turn` or `run` frame: the message is committed)
and to the answer (`result`), throughput, errors, and the server's peak memory (VmHWM of its process). Afterwards
every conversation is read back (GET) and checked: each acknowledged message is stored exactly once, in the order
sent, with the answer its stream gave.

With `--replicas N` the load phase runs N servers on the one database and a client's messages go to each in
turn; with `--collide` each conversation's first two messages are sent at once (one is refused with 409 until the
other is answered, then sent again).

Phase "kill": the same under load, but once `--kill-after` of the messages are acknowledged the server gets
kill -9 mid-turn, and a new one starts on the same database. A client whose stream broke does what any client
should: it reads its conversation back; a message found there is not sent again (answered: done; interrupted:
the client asks again, as a new message), one not found was never committed and is sent again. Checked: no
acknowledged message lost, none stored twice, every turn the dead server ran reads `interrupted` (none stays
`running`), and every client ends with its answers.

Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]

RULES = """
import json
import re
from decompose.models.scripted import asks_for_plan, asks_to_combine

PLAN = json.dumps({"steps": [{"id": 1, "question": "What is the first fact?"},
                             {"id": 2, "question": "What is the second fact?"},
                             {"id": 3, "question": "What do {1} and {2} give together?"}]})


def combined(messages):  # the answer names the message's own tag, so a mixed-up answer shows
    text = str(messages[-1].content)
    tag = re.findall(r"\\[(\\S+?)\\]", text.split("Original question:", 1)[-1])
    return f"Answer for {tag[0] if tag else '?'}."


rules = [(asks_for_plan, PLAN), (asks_to_combine, combined), (r"first fact", "one"), (r"second fact", "two")]
default = "three"
latency = LATENCY
"""
CALLS_PER_TURN = 5  # plan, 3 steps, combine
TAG = re.compile(r"\[(\S+?)\]")


class Server:
    """`python -m decompose.cli serve` on a free port, its log in a file."""

    def __init__(self, workdir: Path, db: str, rules: Path, lease: float):
        env = {k: v for k, v in os.environ.items() if k not in ("DECOMPOSE_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.setdefault("DECOMPOSE_CACHE", str(workdir / "cache"))
        self.log = workdir / f"serve-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "decompose.cli",
                    "serve",
                    "--port",
                    "0",
                    "--model",
                    f"scripted:{rules}",
                    "--db",
                    db,
                    "--lease",
                    str(lease),
                    "--shutdown-timeout",
                    "5",
                ],
                cwd=workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self.url = self._wait_listening()
        except BaseException:
            self.kill()
            raise

    def _wait_listening(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"the server did not start: {self.log.read_text()}")

    def peak_rss_mib(self) -> float:
        """The process's high-water mark of resident memory (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """CPU time the process has used (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def problems(self) -> list[str]:
        """Lines of the server's log that report an error (a traceback, a logged exception)."""
        return [
            line
            for line in self.log.read_text().splitlines()
            if line.startswith(("Traceback", "ERROR")) or "Exception in ASGI" in line
        ]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Target:
    """Where the clients send: the servers' URLs (replicas on one database), changed when one is restarted."""

    urls: list[str]

    @property
    def url(self) -> str:
        return self.urls[0]

    def pick(self, n: int) -> str:
        return self.urls[n % len(self.urls)]


@dataclass
class Sent:
    tag: str
    conversation: str
    sent: float
    first: float | None = None  # the `turn` frame: committed, acknowledged
    answered: float | None = None
    answer: str | None = None
    broken: bool = False  # its stream broke (the server died) before the result
    found: bool = False  # not acknowledged, found stored when the client read its conversation back


@dataclass
class Tally:
    messages: list[Sent] = field(default_factory=list)
    runs: list[Sent] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    broken_by: Counter = field(default_factory=Counter)  # why streams broke: the kill, or a fault
    busy: int = 0  # 409s: another message of the conversation ran, or a dead server's turn held its lease
    resent: int = 0  # never committed, sent again
    asked_again: int = 0  # interrupted by the kill, asked again as a new message
    conversations: dict[str, list[str]] = field(default_factory=dict)  # the tags each client knows are stored
    open_streams: int = 0
    peak_streams: int = 0

    @property
    def acknowledged(self) -> int:
        return sum(m.first is not None for m in self.messages)


class Lost(Exception):
    """The stream broke: the server went away."""


async def read_stream(reply: httpx.Response, item: Sent, tally: Tally) -> None:
    """Read SSE frames to the `result`: the first frame acknowledges, the last carries the answer."""
    name = None
    lines = reply.aiter_lines()
    async for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            if item.first is None:
                item.first = time.monotonic()
            if name == "result":
                item.answer = json.loads(line[6:]).get("answer")
                item.answered = time.monotonic()
                async for _ in lines:  # the server ends the body next: read it to the end, so the
                    pass  # connection goes back to the pool instead of being closed
                return
            if name == "error":
                tally.errors[f"error frame: {json.loads(line[6:])['error']['message'][:60]}"] += 1
    tally.broken_by["the stream ended before its result"] += 1
    raise Lost


async def post_stream(
    client: httpx.AsyncClient, url: str, path: str, body: dict[str, Any], item: Sent, tally: Tally
) -> int:
    """POST and read the stream: the status (200 when the stream was read to its result). Raises Lost."""
    tally.open_streams += 1
    tally.peak_streams = max(tally.peak_streams, tally.open_streams)
    try:
        async with client.stream("POST", url + path, json=body) as reply:
            if reply.status_code != 200:
                await reply.aread()
                return reply.status_code
            await read_stream(reply, item, tally)
            return 200
    except httpx.TransportError as exc:
        tally.broken_by[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        raise Lost from exc
    finally:
        tally.open_streams -= 1


async def call(
    client: httpx.AsyncClient, target: Target, method: str, path: str, deadline: float, **kwargs: Any
) -> httpx.Response:
    """A plain request, tried again while the server is down (until `deadline`)."""
    while True:
        try:
            reply = await client.request(method, target.url + path, **kwargs)
            if reply.status_code < 500:
                return reply
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{method} {path}: no answer from the server in time")
        await asyncio.sleep(0.2)


async def stored_turn(
    client: httpx.AsyncClient, target: Target, cid: str, tag: str, deadline: float
) -> dict[str, Any] | None:
    """The stored turn that carries `tag` once it has ended (a dead server's reads interrupted after its lease)."""
    while True:
        turns = (await call(client, target, "GET", f"/v1/conversations/{cid}", deadline)).json()["turns"]
        mine = [t for t in turns if f"[{tag}]" in t["question"]]
        if not mine or mine[0]["status"] != "running":
            return mine[0] if mine else None
        if time.monotonic() > deadline:
            raise TimeoutError(f"turn {tag} still running")
        await asyncio.sleep(0.2)


async def send_message(
    client: httpx.AsyncClient, target: Target, cid: str, tag: str, tally: Tally, deadline: float, route: int = 0
) -> None:
    """Send one message (to replica `route`) until it has an answer, never storing it twice."""
    tries = 0
    while time.monotonic() < deadline:
        item = Sent(tag, cid, time.monotonic())
        text = f"[{tag}] What do the two facts give together?"
        try:
            status = await post_stream(
                client, target.pick(route), f"/v1/conversations/{cid}/messages", {"question": text}, item, tally
            )
        except Lost:
            status, item.broken = None, True
        if item.first is not None:  # acknowledged: committed, in this order
            tally.conversations[cid].append(tag)
        if status == 409:  # another message of this conversation runs (or a dead server's turn holds its lease)
            tally.busy += 1
            await asyncio.sleep(0.2)
            continue
        if status not in (200, None):
            tally.errors[f"HTTP {status} on a message"] += 1
            await asyncio.sleep(0.2)
            continue
        tally.messages.append(item)
        if status == 200:
            return
        # The stream broke: read the conversation back to learn whether the message was committed.
        turn = await stored_turn(client, target, cid, tag, deadline)
        if turn is None:
            tally.resent += 1  # never committed: sending it again cannot store it twice
            continue
        if item.first is None:
            item.found = True
            tally.conversations[cid].append(tag)
        if turn["status"] == "answered":
            item.answer, item.answered = turn["answer"], time.monotonic()
            return
        tries += 1  # interrupted: ask again, as a new message of its own
        tally.asked_again += 1
        tag = f"{tag.split('-r')[0]}-r{tries}"
    tally.errors["a message never answered before the deadline"] += 1


async def one_client(
    client: httpx.AsyncClient, target: Target, n: int, args: argparse.Namespace, tally: Tally, deadline: float
) -> None:
    try:
        for r in range(args.runs):
            item = Sent(f"c{n}-run{r}", "", time.monotonic())
            try:
                status = await post_stream(
                    client,
                    target.pick(n),
                    "/v1/runs",
                    {"question": f"[{item.tag}] What do the two facts give together?"},
                    item,
                    tally,
                )
            except Lost:
                status, item.broken = None, True
            if status not in (200, None):
                tally.errors[f"HTTP {status} on a run"] += 1
            tally.runs.append(item)
        reply = await call(client, target, "POST", "/v1/conversations", deadline, json={})
        if reply.status_code != 201:
            tally.errors[f"HTTP {reply.status_code} creating a conversation"] += 1
            return
        cid = reply.json()["id"]
        tally.conversations[cid] = []
        first = 0
        if args.collide and args.messages >= 2:  # two messages at once (to two replicas if there are): one is
            first = 2  # acknowledged, the other refused with 409 until the first is answered, then sent again
            await asyncio.gather(
                send_message(client, target, cid, f"c{n}-m0", tally, deadline, n),
                send_message(client, target, cid, f"c{n}-m1", tally, deadline, n + 1),
            )
        for m in range(first, args.messages):
            await send_message(client, target, cid, f"c{n}-m{m}", tally, deadline, n + m)
    except (TimeoutError, httpx.HTTPError) as exc:
        tally.errors[f"client gave up: {type(exc).__name__}"] += 1


async def drive(args: argparse.Namespace, target: Target, on_progress=None) -> tuple[Tally, float]:
    tally = Tally()
    # Each client has a connection pool of its own, as separate users would: one pool shared by hundreds of
    # streams costs httpx a scan of every connection per request, which would load the clients, not the server.
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    tls = ssl.create_default_context()  # made once: each client would otherwise build its own (~10 ms)
    deadline = time.monotonic() + args.timeout * (args.messages + args.runs + 2)
    async with contextlib.AsyncExitStack() as stack:
        # An idle connection is dropped after 2 s, before uvicorn closes it (5 s): reusing one the server is
        # closing at that moment fails the request (a reset), a race of keep-alive, not of the server.
        limits = httpx.Limits(max_connections=4, keepalive_expiry=2.0)
        pools = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=timeout, verify=tls, limits=limits))
            for _ in range(args.clients)
        ]
        started = time.monotonic()
        clients = [
            asyncio.create_task(one_client(pool, target, n, args, tally, deadline)) for n, pool in enumerate(pools)
        ]
        watcher = asyncio.create_task(on_progress(tally, clients)) if on_progress else None
        await asyncio.gather(*clients)
        wall = time.monotonic() - started
        if watcher is not None:
            await watcher
    return tally, wall


async def check_stored(target: Target, tally: Tally) -> dict[str, int]:
    """Read every conversation back: the tags each holds, in order, against what its client knows it sent."""
    counts = Counter()
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(cid: str, tags: list[str]) -> None:
            turns = (await call(client, target, "GET", f"/v1/conversations/{cid}", time.monotonic() + 60)).json()
            stored = [(TAG.findall(t["question"]) or ["?"])[0] for t in turns["turns"]]
            answers = {(TAG.findall(t["question"]) or ["?"])[0]: t["answer"] for t in turns["turns"]}
            counts["stored"] += len(stored)
            counts["duplicated"] += len(stored) - len(set(stored))
            counts["lost"] += len(set(tags) - set(stored))  # acknowledged (or found stored) earlier, gone now
            counts["unknown"] += len(set(stored) - set(tags))  # stored, but its client never sent it
            counts["out of order"] += stored != tags and sorted(stored) == sorted(tags)
            counts["running"] += sum(t["status"] == "running" for t in turns["turns"])
            counts["interrupted"] += sum(t["status"] == "interrupted" for t in turns["turns"])
            for item in tally.messages:
                if item.conversation == cid and item.answer is not None and answers.get(item.tag) != item.answer:
                    counts["answer differs from its stream"] += 1

        await asyncio.gather(*(one(cid, tags) for cid, tags in tally.conversations.items()))
    counts["acknowledged"] = sum(m.first is not None for m in tally.messages)
    return counts


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timings(items: list[Sent]) -> str:
    first = [(m.first - m.sent) * 1000 for m in items if m.first is not None and not m.broken]
    answer = [(m.answered - m.sent) * 1000 for m in items if m.answered is not None and not m.broken]
    return (
        f"first event p50 {pct(first, 0.5):.0f} ms, p99 {pct(first, 0.99):.0f} ms; "
        f"answer p50 {pct(answer, 0.5):.0f} ms, p99 {pct(answer, 0.99):.0f} ms"
    )


def report(tally: Tally, wall: float, counts: dict[str, int], checks: list[tuple[str, bool]]) -> bool:
    answered = sum(m.answered is not None for m in tally.messages)
    runs_ok = sum(r.answered is not None for r in tally.runs)
    print(
        f"  messages: {len(tally.messages)} sent, {counts['acknowledged']} acknowledged, {answered} answered; "
        f"runs: {len(tally.runs)} sent, {runs_ok} answered; {wall:.1f} s"
    )
    print(f"  messages: {timings(tally.messages)}")
    if tally.runs:
        print(f"  runs:     {timings(tally.runs)}")
    turns = answered + runs_ok
    print(
        f"  throughput: {turns / wall:.1f} answered turns+runs/s ({turns * CALLS_PER_TURN / wall:.0f} model "
        f"calls/s); peak open streams {tally.peak_streams}"
    )
    print(
        f"  errors: {sum(tally.errors.values())} {dict(tally.errors)}; 409s: {tally.busy}; streams broken: "
        f"{sum(tally.broken_by.values())} {dict(tally.broken_by)}"
    )
    print(
        f"  stored: {counts['stored']} turns; lost {counts['lost']}, duplicated "
        f"{counts['duplicated']}, unknown {counts['unknown']}, out of order {counts['out of order']}, "
        f"answers differing {counts['answer differs from its stream']}"
    )
    ok = True
    for label, passed in checks:
        print(f"  [{'ok' if passed else 'FAIL'}] {label}")
        ok &= passed
    return ok


def common_checks(tally: Tally, counts: dict[str, int]) -> list[tuple[str, bool]]:
    return [
        (
            "every acknowledged message stored exactly once, in order",
            counts["lost"] == 0
            and counts["duplicated"] == 0
            and counts["unknown"] == 0
            and counts["out of order"] == 0,
        ),
        ("every answer streamed is the answer stored", counts["answer differs from its stream"] == 0),
        ("no turn left running", counts["running"] == 0),
        ("every message answered (itself, or asked again after the kill)", not unanswered(tally)),
    ]


def unanswered(tally: Tally) -> set[str]:
    """The messages a client sent that ended without an answer, even when asked again."""
    answered = {m.tag.split("-r")[0] for m in tally.messages if m.answer is not None}
    return {m.tag.split("-r")[0] for m in tally.messages} - answered


def answer_checks(tally: Tally) -> list[tuple[str, bool]]:
    wrong = [m for m in [*tally.messages, *tally.runs] if m.answer is not None and m.answer != f"Answer for {m.tag}."]
    return [("every answer is its own message's", not wrong)]


def load_phase(args: argparse.Namespace, workdir: Path, rules: Path) -> bool:
    print(
        f"load: {args.clients} clients x ({args.runs} run + {args.messages} messages), model "
        f"{args.latency_ms:g} ms a call, {CALLS_PER_TURN} calls a turn, {args.replicas} server(s), db {args.db}"
        + (", the first two messages of each conversation sent at once" if args.collide else "")
    )
    servers: list[Server] = []
    try:
        servers += [Server(workdir, args.db, rules, lease=args.lease) for _ in range(args.replicas)]
        target = Target([s.url for s in servers])
        tally, wall = asyncio.run(drive(args, target))
        counts = asyncio.run(check_stored(target, tally))
        peak, cpu = max(s.peak_rss_mib() for s in servers), sum(s.cpu_seconds() for s in servers)
    finally:
        for server in servers:
            server.stop()
    print(
        f"  server{'s' if len(servers) > 1 else ''}: peak RSS (VmHWM) {peak:.0f} MiB"
        f"{' (the largest)' if len(servers) > 1 else ''}, CPU {cpu:.1f} s; this process (the clients): CPU "
        f"{time.process_time():.1f} s"
    )
    problems = [line for server in servers for line in server.problems()]
    expected = args.clients * args.messages
    busy_expected = args.collide and args.messages >= 2
    checks = [
        (
            "no errors",
            not tally.errors
            and not tally.broken_by
            and counts["acknowledged"] == expected
            and (busy_expected or not tally.busy),
        ),
        *common_checks(tally, counts),
        *answer_checks(tally),
        ("no error in the server's log", not problems),
        ("every run answered", all(r.answered is not None for r in tally.runs)),
    ]
    ok = report(tally, wall, counts, checks)
    for line in problems[:5]:
        print(f"    log: {line}")
    return ok


def kill_phase(args: argparse.Namespace, workdir: Path, rules: Path) -> bool:
    expected = args.clients * args.messages
    print(
        f"kill -9 under load: {args.clients} clients x {args.messages} messages, kill once "
        f"{args.kill_after:.0%} are acknowledged, restart on the same db"
    )
    servers = [Server(workdir, args.db, rules, lease=args.kill_lease)]
    target = Target([servers[0].url])
    at_kill: dict[str, Any] = {}

    async def killer(tally: Tally, clients: list[asyncio.Task[None]]) -> None:
        while tally.acknowledged < expected * args.kill_after:
            if all(c.done() for c in clients):
                return  # never got there (errors): the checks say so
            await asyncio.sleep(0.01)
        at_kill.update(acked=tally.acknowledged, open=tally.open_streams, t=time.monotonic())
        os.kill(servers[0].proc.pid, signal.SIGKILL)  # mid-turn: streams are open
        servers[0].proc.wait()
        started = time.monotonic()
        servers.append(await asyncio.to_thread(Server, workdir, args.db, rules, args.kill_lease))
        target.urls = [servers[-1].url]
        at_kill["restart_s"] = time.monotonic() - started

    try:
        tally, wall = asyncio.run(drive(args, target, killer))
        counts = asyncio.run(check_stored(target, tally))
    finally:
        for server in servers:
            server.stop()
    broken = sum(m.broken for m in tally.messages)
    print(
        f"  killed with {at_kill.get('acked')} of {expected} messages acknowledged and {at_kill.get('open')} "
        f"streams open; the new server listened {at_kill.get('restart_s', float('nan')):.1f} s later"
    )
    print(
        f"  streams broken by the kill: {broken} messages, {sum(r.broken for r in tally.runs)} runs; "
        f"interrupted turns stored: {counts['interrupted']}; asked again: {tally.asked_again}; "
        f"sent again (never committed): {tally.resent}; found stored without an acknowledgment: "
        f"{sum(m.found for m in tally.messages)}; 409 (conversation busy): {tally.busy}"
    )
    problems = servers[-1].problems()
    checks = [
        ("the kill broke streams mid-turn", broken > 0),
        *common_checks(tally, counts),
        *answer_checks(tally),
        ("every interrupted turn asked again", counts["interrupted"] == tally.asked_again),
        ("no errors besides the kill's", not tally.errors),
        ("no error in the restarted server's log", not problems),
    ]
    ok = report(tally, wall, counts, checks)
    for line in problems[:5]:
        print(f"    log: {line}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=5, help="messages per client's conversation (default 5)")
    parser.add_argument("--runs", type=int, default=1, help="POST /v1/runs per client (default 1)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="each model call's sleep (default 100)")
    parser.add_argument("--db", help="SQLAlchemy URL of the server's database (default: SQLite in a temp folder)")
    parser.add_argument("--lease", type=float, default=15.0, help="the server's --lease in the load phase")
    parser.add_argument("--kill-lease", type=float, default=1.0, help="the servers' --lease in the kill phase")
    parser.add_argument(
        "--kill-after",
        type=float,
        default=0.4,
        help="kill -9 once this share of the messages is acknowledged (default 0.4)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="servers on the one database in the load phase; a client's messages go to each in turn",
    )
    parser.add_argument(
        "--collide",
        action="store_true",
        help="send each conversation's first two messages at once: one gets 409 until the other is answered",
    )
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="skip the kill -9 phase")
    parser.add_argument("--no-load", dest="load", action="store_false", help="skip the load phase")
    parser.add_argument("--timeout", type=float, default=120.0, help="a client's read timeout in seconds")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        args.db = args.db or f"sqlite:///{workdir / 'serve-load.sqlite3'}"
        rules = workdir / "load_rules.py"
        rules.write_text(RULES.replace("LATENCY", repr(args.latency_ms / 1000)))
        ok = True
        if args.load:
            ok &= load_phase(args, workdir, rules)
        if args.kill:
            ok &= kill_phase(args, workdir, rules)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
