"""``luanti-tune bench act``: latency of batched decisions for N agents (docs/design.md "Inference").

For each agent count (1, 100 and ``--agents``), with the real ``pursuit`` family (a randomly
initialised champion in a temporary registry) served by a real ``luanti-tune serve`` subprocess.
Every body is what the ``luanti_tune`` mod sends (built by the mod's own Lua code, see
:mod:`luanti_tune.bench.mod_bodies`: a ``nearby`` grid of radius 1, float positions, seven players
in view of every agent), and every timed call carries the same agents one decision later than the
previous call (the tick advancing by 2, as a server's stream: each agent's target track grows by
one sample per call):

- ``http``: p50/p99 of one batched ``POST /v1/act`` (JSON, keep-alive connection);
- ``engine``: p50/p99 of the in-process engine alone, ONNX Runtime: the batch of validated
  observations exactly as ``/v1/act`` hands it over (``ActService.parse``: JSON rows validated by
  the pydantic models, then a columnar :class:`ObservationBatch`; a new one per call, so nothing
  is cached between calls) -> every agent's action (columnar);
  the body is parsed right before and the answer rendered right after each call (untimed), as in
  the service, so the engine's data is not kept warm in the CPU caches between calls;
- ``http_columns``/``engine_columns``: the same with the columnar wire format the mod sends by
  default (``serve/wire_columns.py``: request parsed into arrays, answer rendered as columns);
  ``targets_met`` judges the latency targets for both formats; ``columns_*_speedup``: rows p50 /
  columns p50 in the same run;
- ``engine_back_to_back``: the same calls back to back on batches parsed beforehand (warm caches);
- ``engine_typed``: the same from a list of pydantic ``Observation`` objects (in-process callers);
- ``engine_torch``: the same with eager PyTorch; ``onnx_speedup`` = torch p50 / ONNX p50;
- ``engine_floor``: the engine with a family that costs nothing (features and decisions prepared
  beforehand): what the engine itself adds per batch, whatever the family;
- ``per_agent``: the same agents as separate one-agent HTTP calls; ``batched_speedup`` =
  batched agents/s / per-agent agents/s;
- ``engine_cpu``/``engine_columns_cpu``/``engine_floor_cpu``: CPU time of the deciding thread per call, and
  ``http_server_cpu_ms_per_call``: the server process's CPU per batched call: figures that do not
  grow when other processes compete for the two cores (wall times do);
- ``training``: p99 of the batched HTTP call while a CPU-bound torch training loop runs in another
  process as the training worker runs (1 torch thread, the worker's nice value), and its ratio to
  the idle p99 (rows and columns), measured in alternating blocks with the loop running and paused
  (the machine's speed drifts over minutes: back-to-back phases would compare two moments as much as
  two loads); ``normal_priority_*``: the same loop at normal priority;
- ``during_swaps``: the batched HTTP call while three new champions are promoted one after the
  other (each call until the new version answers, then 20 more), and its p99's ratio to idle;
- ``breakdown``: where the CPU time of the largest batch goes (thread CPU medians): JSON parse alone, parse + validation
  (as the service does it: JSON rows by the pydantic models into columns; the pydantic validation
  alone; JSON and msgpack bodies; the columnar decoder), the family's
  featurize/decode, the forward pass, the engine's own overhead and rendering the response.

The latency figures (``http``, ``engine``, their columnar twins) and the p99s of the ``training``
ratio (idle and training, rows and columns) take ``--reps`` calls each (500: their p99 is the 5th
slowest call; of 100 calls it would be nearly the slowest one, of 200 the second slowest); the
side figures (floor, warm caches, typed input, torch) take at most 100, the normal-priority
training figures 200.

- ``no_model``: the same stream of calls answered by the scripted fallback (a server and an
  engine over an empty registry, as a fresh ``luanti-tune serve``): ``http``/``engine`` and their
  columnar twins at ``--agents``;
- ``repeated_tick``: the champion answering every call twice (a client retrying each request: the
  same tick again), the same four figures at ``--agents``.

``--only PATH`` (repeatable: ``champion``, ``no_model``, ``repeated_tick``) measures just those
paths at ``--agents`` (``champion``: the ordinary stream, for comparison), without the rest.

``cpu_probe_ms``: a fixed workload timed before and after the run (this VM slows
down by about 2x after minutes of load on both cores, as this benchmark puts on it): read the
figures with it.

The process uses the service's garbage-collector thresholds (``luanti-tune serve`` sets them), as
the engine runs inside the service.
"""

from __future__ import annotations

import gc
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson

from luanti_tune.bench.common import cpu_probe_ms, emit, percentiles_ms, stop_process
from luanti_tune.bench.mod_bodies import mod_bodies

TARGETS = {"engine_p99_ms": 2.0, "http_p99_ms": 10.0, "batched_speedup": 20.0, "training_ratio": 1.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(conn: http.client.HTTPConnection, body: bytes) -> float:
    t0 = time.perf_counter()
    conn.request("POST", "/v1/act", body=body, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    dt = time.perf_counter() - t0
    if resp.status != 200:
        raise click.ClickException(f"/v1/act answered {resp.status}: {data[:300]!r}")
    return dt


def _connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = dict(
        os.environ,
        LUANTI_TUNE_DATA_DIR=str(data_dir),
        LUANTI_TUNE_ACT_LOG_SAMPLE_RATE="0.01",
        LUANTI_TUNE_ACT_MAX_AGENTS="8192",
    )
    cmd = [sys.executable, "-c", "from luanti_tune.cli.main import main; main()", "serve"]
    cmd += ["--port", str(port), "--log-level", "warning"]
    from luanti_tune.serve.cli import serve as serve_command

    if any("--no-worker" in getattr(p, "secondary_opts", ()) for p in serve_command.params):
        cmd.append("--no-worker")  # the training load is controlled by this bench, not the worker
    log_path = data_dir / "serve.log"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = _connect(port)
            _post(conn, mod_bodies(1, 1)[0])  # loads the champion
            conn.close()
            return proc, port
        except (OSError, click.ClickException):
            time.sleep(0.2)
    stop_process(proc)
    raise click.ClickException(f"luanti-tune serve did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


TRAIN_LOOP = textwrap.dedent(
    """
    import os, sys, torch
    os.nice(int(sys.argv[1]))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x, y = torch.randn(512, 256), torch.randn(512, 256)
    print("ready", flush=True)
    while True:
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
    """
)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


#: Alternating blocks of the training figure (half with the training loop running, half paused).
TRAINING_BLOCKS = 4


def _under_training(port: int, agents: int, seed: int, calls: int, nice: int) -> dict[str, list[float]]:
    """HTTP latencies (rows, columns) with TRAIN_LOOP, at ``nice``, running and paused (SIGSTOP):
    ``TRAINING_BLOCKS`` blocks each, interleaved (training, idle, idle, training, ...), so that the
    machine's own drift over time weighs on both alike; ``calls`` calls per figure in all."""
    per_block = max(10, calls // TRAINING_BLOCKS)
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAIN_LOOP, str(nice)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lat: dict[str, list[float]] = {"idle": [], "training": [], "columns_idle": [], "columns_training": []}
    try:
        assert trainer.stdout is not None
        trainer.stdout.readline()
        for block in range(TRAINING_BLOCKS):
            for phase in ("training", "idle") if block % 2 == 0 else ("idle", "training"):
                os.kill(trainer.pid, signal.SIGCONT if phase == "training" else signal.SIGSTOP)
                time.sleep(0.3)  # the loop back at full speed (or surely stopped)
                lat[phase] += _time_http(port, step_bodies(agents, seed, per_block + WARMUP))
                lat[f"columns_{phase}"] += _time_http(port, step_bodies(agents, seed, per_block + WARMUP, columns=True))
    finally:
        trainer.kill()
        trainer.wait()
    return lat


def _during_swaps(port: int, data_dir: Path, n: int, seed: int, swaps: int = 3) -> dict[str, Any]:
    """Batched ``/v1/act`` calls while the bench promotes ``swaps`` new champions one after the other
    (the service polls the registry, exports and checks each, and swaps it in)."""
    conn = _connect(port)
    lat: list[float] = []
    versions: set[str] = set()

    def call() -> None:
        body = step_bodies(n, seed, 1)[0]
        t0 = time.perf_counter()
        conn.request("POST", "/v1/act", body=body, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        lat.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise click.ClickException(f"/v1/act answered {resp.status} during a swap: {data[:300]!r}")
        versions.add(orjson.loads(data)["model"]["version"])

    try:
        call()  # the version serving before the first promotion
        for k in range(1, swaps + 1):
            _champion(data_dir, seed + 1000 + k)
            deadline = time.monotonic() + 60
            while len(versions) < k + 1:  # until the k-th new version answers
                call()
                if time.monotonic() > deadline:
                    raise click.ClickException("the service did not swap in a promoted champion within 60 s")
            for _ in range(20):
                call()
    finally:
        conn.close()
    return {"calls": len(lat), "versions_seen": len(versions), **percentiles_ms(lat)}


def _champion(data_dir: Path, seed: int) -> None:
    import torch

    from luanti_tune.policies.pursuit import architecture, build_module
    from luanti_tune.registry import Registry

    torch.manual_seed(seed)
    arch = architecture()
    reg = Registry(data_dir / "models")
    version = reg.save("pursuit", module=build_module(arch), architecture=arch, name="pursuit-bench")
    reg.promote("pursuit", version, reason="bench", force=True)


def _engine(data_dir: Path, onnx: bool) -> Any:
    from luanti_tune.inference.engine import EngineConfig, InferenceEngine
    from luanti_tune.inference.registry_source import RegistrySource
    from luanti_tune.registry import Registry

    return InferenceEngine(RegistrySource(Registry(data_dir / "models")), config=EngineConfig(onnx=onnx))


def _floor_engine(n: int) -> tuple[Any, list[Any]]:
    """An engine whose family costs nothing (preallocated features and decisions): the engine's own
    per-batch cost (grouping, sessions, ONNX forward of a small MLP, confidence/finite checks)."""
    import torch

    from luanti_tune.inference.engine import InferenceEngine
    from luanti_tune.inference.source import ModelCandidate, StaticModelSource
    from luanti_tune.policies.base import Decision, FamilyAdapter
    from luanti_tune.policies.batch import DecisionColumns
    from luanti_tune.schemas.agent import Observation

    obs = [Observation.model_validate(o) for o in orjson.loads(mod_bodies(n, 1)[0])["observations"]]
    feats = {"x": np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32)}
    columns = DecisionColumns([o.agent for o in obs], np.zeros(n, bool), np.zeros((n, 3)), np.ones(n), np.ones(n))

    class Prepared(FamilyAdapter):
        family = "pursuit"
        input_names = ("x",)
        output_names = ("y",)

        def featurize(self, observations: Any, memory: Any) -> dict[str, np.ndarray]:
            return {"x": feats["x"][: len(observations)]}

        def decode(self, observations: Any, outputs: Any) -> list[Decision]:
            return self.decode_columns(observations, outputs).decisions()

        def decode_columns(self, observations: Any, outputs: Any) -> DecisionColumns:
            return columns if len(observations) == n else columns.take(np.arange(len(observations)))

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.SiLU(), torch.nn.Linear(64, 6))
    cand = ModelCandidate("pursuit", "floor", "v1", net, Prepared(), sample_observations=obs[:64])
    return InferenceEngine(StaticModelSource([cand]), fallbacks={}), obs


CPU: dict[str, list[float]] = {}


def _act_service(engine: Any = None) -> Any:
    from luanti_tune.config.settings import Settings
    from luanti_tune.serve.act import ActService

    return ActService(Settings(act_max_agents=8192), None, engine=engine)


def _wire_batch(service: Any, body: bytes) -> Any:
    """The batch ``/v1/act`` hands the engine for ``body`` (what ``ActService.parse`` returns)."""
    obs, bad = service.parse(body, "application/json", False)
    assert not bad
    return obs


def _columns_batch(service: Any, body: bytes) -> Any:
    """The batch ``/v1/act`` hands the engine for a columnar ``body``."""
    obs, bad = service.parse_columns(body, "application/json", False)
    assert not bad
    return obs


def _render_columns(batch: Any, result: Any) -> bytes:
    from luanti_tune.serve.answer import render_columns

    return orjson.dumps(render_columns(result, batch, batch.agents), option=orjson.OPT_SERIALIZE_NUMPY)


WARMUP = 5


def step_bodies(n: int, seed: int, count: int, columns: bool = False) -> list[bytes]:
    """``count`` request bodies of the same ``n`` agents at consecutive decisions, built by the
    mod's own encoder (:func:`~luanti_tune.bench.mod_bodies.mod_bodies`; every call of this
    continues the tick count, so an agent never goes back in time); ``columns``: in the columnar
    format instead of JSON rows. ``seed``: unused (the mod's world is deterministic)."""
    return mod_bodies(n, count, columns=columns)


def _time_engine(engine: Any, inputs: list[Any], tag: str = "", prepare: Any = None, finish: Any = None) -> list[float]:
    """Wall times of decide calls, one per ``inputs[WARMUP:]``; the calling thread's CPU time per
    call goes to ``CPU[tag]`` (a load-independent figure: on a busy machine wall time includes
    waiting for a core).

    ``prepare(input) -> batch`` runs right before each (untimed) call and ``finish(batch, result)``
    right after it, as parsing and rendering do around the engine in the service (they also evict
    the engine's data from the CPU caches, as in the service); without them the calls run back
    to back on batches made beforehand."""
    out, cpu = [], []
    for k, x in enumerate(inputs):
        batch = prepare(x) if prepare is not None else x
        c0 = time.thread_time()
        t0 = time.perf_counter()
        result = engine.decide(batch)
        t1 = time.perf_counter()
        c1 = time.thread_time()
        if finish is not None:
            finish(batch, result)
        if k >= WARMUP:
            out.append(t1 - t0)
            cpu.append(c1 - c0)
    if tag:
        CPU[tag] = cpu
    return out


def _server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_http(port: int, bodies: list[bytes], pid: int | None = None, tag: str = "") -> list[float]:
    """Wall times of ``POST /v1/act`` with ``bodies[WARMUP:]`` on one keep-alive connection; the
    server process's CPU per call goes to ``CPU[tag]``."""
    conn = _connect(port)
    try:
        for body in bodies[:WARMUP]:
            _post(conn, body)
        c0 = _server_cpu_s(pid) if pid else 0.0
        out = [_post(conn, body) for body in bodies[WARMUP:]]
        if pid and tag:
            CPU[tag] = [(_server_cpu_s(pid) - c0) / len(out)]
        return out
    finally:
        conn.close()


def _breakdown(n: int, seed: int, engine: Any, reps: int = 30) -> dict[str, float]:
    """Median CPU cost of each step of one batched call (server side), largest batch."""
    import msgpack

    from luanti_tune.serve.answer import render_json

    bodies = step_bodies(n, seed, 2 * reps + 1)
    body = bodies[-1]
    cbodies = step_bodies(n, seed, reps + 1, columns=True)
    cbody = cbodies[-1]
    packed = msgpack.packb(orjson.loads(body))
    service = _act_service(engine)
    parsed = _wire_batch(service, body)
    fresh = iter([_wire_batch(service, b) for b in bodies[:-1]])  # consecutive ticks, one per call
    cparsed = _columns_batch(service, cbody)
    cfresh = iter([_columns_batch(service, b) for b in cbodies[:-1]])
    served = engine.models.by_family["pursuit"]
    adapter, runner = served.adapter, served.runner

    def med(fn: Any) -> float:
        """Median CPU time of this thread (milliseconds): does not grow with other load."""
        ts = []
        for _ in range(reps):
            t0 = time.thread_time()
            fn()
            ts.append(time.thread_time() - t0)
        return round(float(np.median(ts)) * 1000, 3)

    result = engine.decide(parsed)
    from luanti_tune.inference.sessions import SessionStore

    memory = SessionStore(1_000_000)  # featurize's own tracks, fed consecutive ticks like the engine
    feats = adapter.featurize(parsed, {})
    outputs = runner(feats)
    decode = adapter.decode_columns
    figures = {
        "json_parse_only_ms": med(lambda: orjson.loads(body)),
        "json_validate_ms": med(lambda: service.parse(body, "application/json", False)),
        "msgpack_validate_ms": med(lambda: service.parse(packed, "application/msgpack", False)),
        "json_validate_pydantic_ms": med(lambda: service.request_model.model_validate_json(body)),
        "msgpack_validate_pydantic_ms": med(lambda: service.request_model.model_validate(msgpack.unpackb(packed))),
        "engine_ms": med(lambda: engine.decide(next(fresh))),
        "family_featurize_ms": med(lambda: adapter.featurize(next(fresh), memory)),
        "forward_ms": med(lambda: runner(feats)),
        "family_decode_ms": med(lambda: decode(parsed, outputs)),
        "render_ms": med(lambda: render_json(result, parsed)),
        "json_body_bytes": len(body),
        "msgpack_body_bytes": len(packed),
        "columns_validate_ms": med(lambda: service.parse_columns(cbody, "application/json", False)),
        "columns_family_featurize_ms": med(lambda: adapter.featurize(next(cfresh), memory)),
        "columns_render_ms": med(lambda: _render_columns(cparsed, result)),
        "columns_body_bytes": len(cbody),
    }
    family = figures["family_featurize_ms"] + figures["forward_ms"] + figures["family_decode_ms"]
    figures["engine_overhead_ms"] = round(max(0.0, figures["engine_ms"] - family), 3)
    return figures


#: The paths ``--only`` can measure on their own (``_paths``).
PATHS = ("champion", "no_model", "repeated_tick")


def _twice(bodies: list[bytes]) -> list[bytes]:
    """Every body twice in a row: a client retrying each request (the same tick again)."""
    return [b for b in bodies for _ in range(2)]


def _path_figures(engine: Any, service: Any, port: int, bodies: Any, tag: str) -> dict[str, Any]:
    """p50/p99 of the calls ``bodies(columns)`` in process (``engine``, each body parsed right
    before and the answer rendered right after, as in the service) and over HTTP (``port``), with
    JSON rows and with columns."""
    from luanti_tune.serve.act import render_json

    def parse_rows(body: bytes) -> Any:
        return _wire_batch(service, body)

    def render_rows(batch: Any, result: Any) -> None:
        render_json(result, batch)

    def parse_columns(body: bytes) -> Any:
        return _columns_batch(service, body)

    out: dict[str, Any] = {}
    for suffix, parse, finish in (("", parse_rows, render_rows), ("_columns", parse_columns, _render_columns)):
        columns = bool(suffix)
        out[f"engine{suffix}"] = percentiles_ms(_time_engine(engine, bodies(columns), tag + suffix, parse, finish))
        out[f"engine{suffix}_cpu"] = percentiles_ms(CPU[tag + suffix])
        out[f"http{suffix}"] = percentiles_ms(_time_http(port, bodies(columns)))
    conn = _connect(port)  # who answered (a scripted policy for no_model)
    try:
        conn.request("POST", "/v1/act", body=bodies(False)[0], headers={"content-type": "application/json"})
        out["decided_by"] = orjson.loads(conn.getresponse().read())["model"]["name"]
    finally:
        conn.close()
    return out


def _paths(
    paths: tuple[str, ...], data_dir: Path, agents: int, reps: int, seed: int, service: Any, engine: Any, port: int
) -> dict[str, Any]:
    """The figures of ``paths`` (see :data:`PATHS`) at ``agents``; ``engine``/``port``: the champion's."""
    calls = reps + WARMUP
    out: dict[str, Any] = {}
    if "champion" in paths:
        out["champion"] = _path_figures(
            engine, service, port, lambda columns: step_bodies(agents, seed, calls, columns), "champion"
        )
    if "repeated_tick" in paths:
        out["repeated_tick"] = _path_figures(
            engine,
            service,
            port,
            lambda columns: _twice(step_bodies(agents, seed, (calls + 1) // 2, columns)),
            "repeated_tick",
        )
    if "no_model" in paths:
        empty = data_dir / "no-model"
        empty.mkdir(exist_ok=True)
        fallback = _engine(empty, True)
        proc, fb_port = _start_server(empty)
        try:
            out["no_model"] = _path_figures(
                fallback, service, fb_port, lambda columns: step_bodies(agents, seed, calls, columns), "no_model"
            )
        finally:
            stop_process(proc)
            fallback.close()
    return out


def _only(paths: tuple[str, ...], agents: int, reps: int, seed: int) -> dict[str, Any]:
    """``bench act --only``: just ``paths`` at ``agents`` (a champion served only when needed)."""
    with tempfile.TemporaryDirectory(prefix="bench-act-") as tmp:
        data_dir = Path(tmp)
        service = _act_service()
        if not set(paths) - {"no_model"}:
            return _paths(paths, data_dir, agents, reps, seed, service, None, 0)
        _champion(data_dir, seed)
        engine = _engine(data_dir, True)
        proc, port = _start_server(data_dir)
        try:
            return _paths(paths, data_dir, agents, reps, seed, service, engine, port)
        finally:
            stop_process(proc)
            engine.close()


@click.command()
@click.option("--agents", type=click.IntRange(min=2), default=1000, show_default=True, help="Largest agent count.")
@click.option(
    "--reps",
    type=click.IntRange(min=20),
    default=500,
    show_default=True,
    help="Timed calls per latency figure (a p99 of 500 calls is the 5th slowest; of 100, nearly the slowest).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--only",
    type=click.Choice(PATHS),
    multiple=True,
    help="Measure only this path at --agents (repeatable): the champion, no model (fallback), a repeated tick.",
)
def act(agents: int, reps: int, seed: int, only: tuple[str, ...]) -> None:
    """Batched /v1/act latency (HTTP and in-process), per-agent calls, ONNX vs PyTorch, under training."""
    from rich.progress import Progress

    from luanti_tune.policies.batch import ObservationBatch
    from luanti_tune.schemas.agent import Observation
    from luanti_tune.serve.act import render_json
    from luanti_tune.serve.cli import GC_THRESHOLD_GEN0, SWITCH_INTERVAL_S

    probe_start = cpu_probe_ms()
    gc.set_threshold(GC_THRESHOLD_GEN0, 20, 20)  # as in the service, where the engine runs
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if only:
        figures = _only(only, agents, reps, seed)
        emit(
            "act",
            {
                "agents": agents,
                "family": "pursuit",
                **figures,
                "load_avg": [round(x, 2) for x in os.getloadavg()],
                "cpu_probe_ms": {"start": probe_start, "end": cpu_probe_ms()},
            },
        )
        return
    counts = sorted({1, 100, agents})
    # the side figures (floor, warm caches, typed input, torch: read at the median) and the
    # normal-priority training figures take fewer calls: a long run slows this VM down (see cpu_probe_ms)
    side = min(reps, 100)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-act-") as tmp, Progress(transient=True) as progress:
        data_dir = Path(tmp)
        task = progress.add_task("bench act", total=4 + 3 * len(counts))
        _champion(data_dir, seed)
        onnx_engine, torch_engine = _engine(data_dir, True), _engine(data_dir, False)
        service = _act_service()
        served = onnx_engine.models.by_family["pursuit"].report
        runtime = served.runtime if served.runtime != "onnx" else f"onnx ({served.extra.get('graph')} graph)"
        progress.advance(task)
        proc, port = _start_server(data_dir)
        try:
            progress.advance(task)
            for n in counts:
                floor_engine, floor_obs = _floor_engine(n)
                floor = _time_engine(
                    floor_engine, [ObservationBatch(floor_obs) for _ in range(side + WARMUP)], f"floor{n}"
                )
                floor_engine.close()

                # every engine gets its own stream of consecutive ticks; parse before / render after
                # each call as the service does
                def parse(body: bytes) -> Any:
                    return _wire_batch(service, body)

                def parse_typed(body: bytes) -> Any:
                    return [Observation.model_validate(o) for o in orjson.loads(body)["observations"]]

                def rendered(batch: Any, result: Any) -> None:
                    render_json(result, batch)

                def parse_columns(body: bytes) -> Any:
                    return _columns_batch(service, body)

                steps = reps + WARMUP
                eng = _time_engine(onnx_engine, step_bodies(n, seed, steps), f"engine{n}", parse, rendered)
                eng_cols = _time_engine(
                    onnx_engine,
                    step_bodies(n, seed, steps, columns=True),
                    f"columns{n}",
                    parse_columns,
                    _render_columns,
                )
                hot = [_wire_batch(service, b) for b in step_bodies(n, seed, side + WARMUP)]
                eng_hot = _time_engine(onnx_engine, hot)
                del hot
                eng_typed = _time_engine(onnx_engine, step_bodies(n, seed, side + WARMUP), "", parse_typed, rendered)
                eng_t = _time_engine(torch_engine, step_bodies(n, seed, side + WARMUP), "", parse, rendered)
                progress.advance(task)
                bodies = step_bodies(n, seed, reps + WARMUP)
                http_t = _time_http(port, bodies, proc.pid, f"server{n}")
                http_cols = _time_http(port, step_bodies(n, seed, reps + WARMUP, columns=True))
                progress.advance(task)
                # per-agent calls: every agent on its own request, one after the other
                rounds = max(1, min(3, 300 // n))
                per_rounds = [
                    [orjson.dumps({"observations": [o]}) for o in orjson.loads(b)["observations"]]
                    for b in step_bodies(n, seed, rounds)
                ]
                conn = _connect(port)
                t0 = time.perf_counter()
                for per_bodies in per_rounds:
                    for b in per_bodies:
                        _post(conn, b)
                per_agent_s = (time.perf_counter() - t0) / rounds
                conn.close()
                progress.advance(task)
                h, e, et = percentiles_ms(http_t), percentiles_ms(eng), percentiles_ms(eng_t)
                batched_aps = n / float(np.mean(http_t))
                per_aps = n / per_agent_s
                results[str(n)] = {
                    "http": h,
                    "engine": e,
                    "http_columns": percentiles_ms(http_cols),
                    "engine_columns": percentiles_ms(eng_cols),
                    # the columnar format against JSON rows, measured in this run (p50 ratios)
                    "columns_http_speedup": _ratio(h["p50_ms"], percentiles_ms(http_cols)["p50_ms"]),
                    "columns_engine_speedup": _ratio(e["p50_ms"], percentiles_ms(eng_cols)["p50_ms"]),
                    "engine_columns_cpu": percentiles_ms(CPU[f"columns{n}"]),
                    "engine_back_to_back": percentiles_ms(eng_hot),
                    "engine_typed": percentiles_ms(eng_typed),
                    "engine_torch": et,
                    "engine_floor": percentiles_ms(floor),
                    "engine_cpu": percentiles_ms(CPU[f"engine{n}"]),
                    "engine_floor_cpu": percentiles_ms(CPU[f"floor{n}"]),
                    "http_server_cpu_ms_per_call": round(CPU[f"server{n}"][0] * 1000, 3),
                    "onnx_speedup": round(et["p50_ms"] / e["p50_ms"], 2) if e["p50_ms"] else None,
                    "per_agent_calls_ms": round(per_agent_s * 1000, 3),
                    "batched_agents_per_s": round(batched_aps, 1),
                    "per_agent_agents_per_s": round(per_aps, 1),
                    "batched_speedup": round(batched_aps / per_aps, 2),
                }
            # p99 while a training loop runs in another process, against p99 with it paused
            from luanti_tune.worker.loop import WorkerConfig

            worker = {
                k: percentiles_ms(v) for k, v in _under_training(port, agents, seed, reps, WorkerConfig().nice).items()
            }
            normal = {k: percentiles_ms(v) for k, v in _under_training(port, agents, seed, 2 * side, 0).items()}
            idle, idle_cols = worker["idle"], worker["columns_idle"]
            swapping = _during_swaps(port, data_dir, agents, seed)
            progress.advance(task)
            breakdown = _breakdown(agents, seed, onnx_engine)
            progress.advance(task)
            paths = _paths(("no_model", "repeated_tick"), data_dir, agents, reps, seed, service, onnx_engine, port)
        finally:
            stop_process(proc)
            onnx_engine.close()
            torch_engine.close()
    top = results[str(agents)]
    training = {
        "idle_p99_ms": idle["p99_ms"],
        "training_p99_ms": worker["training"]["p99_ms"],
        "ratio": _ratio(worker["training"]["p99_ms"], idle["p99_ms"]),
        "columns_ratio": _ratio(worker["columns_training"]["p99_ms"], idle_cols["p99_ms"]),
        **worker,
        # the same training loop at normal priority (the worker lowers its own priority)
        "normal_priority_ratio": _ratio(normal["training"]["p99_ms"], normal["idle"]["p99_ms"]),
        "normal_priority_columns_ratio": _ratio(normal["columns_training"]["p99_ms"], normal["columns_idle"]["p99_ms"]),
        "normal_priority": normal,
    }
    swaps = {**swapping, "ratio_p99_to_idle": round(swapping["p99_ms"] / idle["p99_ms"], 2)}
    summary = {
        "engine_p99_ms": top["engine"]["p99_ms"],
        "engine_floor_p99_ms": top["engine_floor"]["p99_ms"],
        "engine_cpu_p99_ms": top["engine_cpu"]["p99_ms"],
        "engine_floor_cpu_p99_ms": top["engine_floor_cpu"]["p99_ms"],
        "http_server_cpu_ms_per_call": top["http_server_cpu_ms_per_call"],
        "http_p99_ms": top["http"]["p99_ms"],
        "batched_speedup": top["batched_speedup"],
        "onnx_speedup": top["onnx_speedup"],
        "training_ratio": training["ratio"],
        "engine_columns_p99_ms": top["engine_columns"]["p99_ms"],
        "engine_columns_cpu_p99_ms": top["engine_columns_cpu"]["p99_ms"],
        "http_columns_p99_ms": top["http_columns"]["p99_ms"],
        "training_columns_ratio": training["columns_ratio"],
        "columns_http_speedup": top["columns_http_speedup"],
        "columns_engine_speedup": top["columns_engine_speedup"],
        "no_model_http_p99_ms": paths["no_model"]["http"]["p99_ms"],
        "no_model_engine_p99_ms": paths["no_model"]["engine"]["p99_ms"],
        "repeated_tick_http_p99_ms": paths["repeated_tick"]["http"]["p99_ms"],
        "repeated_tick_engine_p99_ms": paths["repeated_tick"]["engine"]["p99_ms"],
    }

    def at_most(value: float | None, target: float) -> bool:
        return value is not None and value <= target

    met = {
        "engine_p99_ms": at_most(summary["engine_p99_ms"], TARGETS["engine_p99_ms"]),
        "http_p99_ms": at_most(summary["http_p99_ms"], TARGETS["http_p99_ms"]),
        "batched_speedup": summary["batched_speedup"] >= TARGETS["batched_speedup"],
        "training_ratio": at_most(summary["training_ratio"], TARGETS["training_ratio"]),
        # the same latency targets with the compact columnar wire format
        "engine_columns_p99_ms": at_most(summary["engine_columns_p99_ms"], TARGETS["engine_p99_ms"]),
        "http_columns_p99_ms": at_most(summary["http_columns_p99_ms"], TARGETS["http_p99_ms"]),
        "training_columns_ratio": at_most(summary["training_columns_ratio"], TARGETS["training_ratio"]),
        # the same latency targets without a model (scripted fallback) and with every tick sent twice
        **{
            f"{path}_{where}_p99_ms": at_most(summary[f"{path}_{where}_p99_ms"], TARGETS[f"{where}_p99_ms"])
            for path in ("no_model", "repeated_tick")
            for where in ("http", "engine")
        },
    }
    emit(
        "act",
        {
            "agents": agents,
            "family": "pursuit",
            "runtime": runtime,
            "summary": summary,
            "targets": TARGETS,
            "targets_met": met,
            "by_agents": results,
            "training": training,
            "during_swaps": swaps,
            "breakdown": breakdown,
            **paths,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            # the machine's speed before and after (a fixed workload's ms: larger = slower)
            "cpu_probe_ms": {"start": probe_start, "end": cpu_probe_ms()},
        },
    )
