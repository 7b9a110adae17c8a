"""Everything that touches Ray lives in this module.

Tools run as Ray tasks with the resources of their tool card (``num_cpus``,
``num_gpus``, ``memory``); cards marked ``actor: true`` are served by a pool of
long-lived actors that build the tool once.  A call that fails for a *system*
reason (worker crash, lost object, timeout) is retried up to
``execution.task_retries`` times and every failed attempt is reported back so
the graph can trace it; a tool's own exception is re-raised as is.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from add_pipeline.core.config import ToolCard, Workflow
from add_pipeline.exec.runner import Attempt, CallResult, ToolSpec, ToolSystemError, tool_spec, tool_steps
from add_pipeline.tools.batching import BatchItem, Request, call_batch

_WORKER_TOOLS: dict[ToolSpec, Any] = {}


def _limit_threads() -> None:
    """Keep one task on the CPUs Ray gave it: OpenCV ignores OMP_NUM_THREADS, so tell it directly."""
    import cv2

    cv2.setNumThreads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))


def _cached_tool(spec: ToolSpec) -> Any:
    """Build each tool once per worker process (tasks reuse worker processes)."""
    if not _WORKER_TOOLS:
        _limit_threads()
    if spec not in _WORKER_TOOLS:
        _WORKER_TOOLS[spec] = spec.build()
    return _WORKER_TOOLS[spec]


@ray.remote
def _run_tool(spec: ToolSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = _cached_tool(spec)(*args, **kwargs)
    return value, time.perf_counter() - t0


@ray.remote
class ToolActor:
    """A long-lived worker holding one built tool (weights load once)."""

    def __init__(self, spec: ToolSpec) -> None:
        _limit_threads()
        self.tool = spec.build()

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, float]:
        t0 = time.perf_counter()
        value = self.tool(*args, **kwargs)
        return value, time.perf_counter() - t0

    def call_batch(self, requests: list[Request]) -> list[BatchItem]:
        """Several ``(args, kwargs)`` requests; batched tools share forward passes. A tool error in
        one request comes back in its item; the others still succeed."""
        return call_batch(self.tool, requests)


class _MicroBatcher:
    """Gathers concurrent calls to one actor-served tool into batches (up to ``size``, waiting at
    most ``wait_s`` for company), so that many graphs in flight share the model's forward passes."""

    def __init__(self, pool: list[Any], size: int, wait_s: float = 0.01) -> None:
        self._actors = itertools.cycle(pool)
        self._size, self._wait = size, wait_s
        self._queue: queue.Queue[tuple[Request, Future[BatchItem]]] = queue.Queue()
        threading.Thread(target=self._dispatch, daemon=True, name="micro-batcher").start()

    def submit(self, request: Request) -> Future[BatchItem]:
        fut: Future[BatchItem] = Future()
        self._queue.put((request, fut))
        return fut

    def _dispatch(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self._wait
            while len(batch) < self._size:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            ref = next(self._actors).call_batch.remote([req for req, _ in batch])
            threading.Thread(target=self._resolve, args=(ref, batch), daemon=True).start()

    @staticmethod
    def _resolve(ref: Any, batch: list[tuple[Request, Future[BatchItem]]]) -> None:
        try:
            items = ray.get(ref)
        except Exception as exc:  # a system failure of the whole batch: every caller sees it
            for _, fut in batch:
                fut.set_exception(exc)
            return
        for (_, fut), item in zip(batch, items, strict=True):
            fut.set_result(item)


def _options(card: ToolCard) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": card.resources.num_cpus, "num_gpus": card.resources.num_gpus}
    if card.resources.memory:
        opts["memory"] = card.resources.memory
    return opts


def unreachable(address: str, timeout_s: float) -> str | None:
    """Why the Ray cluster at ``address`` cannot be reached within ``timeout_s`` (a TCP connect to its
    head), or None if it can or the address is one Ray resolves itself (``auto``, ``local``).

    ``ray.init`` on an unreachable head retries for minutes; this answers in ``timeout_s``.
    """
    import socket

    if address in ("auto", "local"):
        return None
    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://").split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    try:
        port_no = int(port) if port else (10001 if client else 6379)
    except ValueError:
        return f"bad port {port!r}"
    try:
        with socket.create_connection((host.strip("[]"), port_no), timeout=timeout_s):
            return None
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def reap_orphans() -> int:
    """Kill this user's Ray processes orphaned by a driver that died (``kill -9``): Ray's node agents
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``, ...) outlive a killed driver, re-parented to
    init, ~90 MB each. A live Ray's agents have their raylet as parent, so only orphans are touched.
    Returns how many were killed."""
    import psutil

    me = psutil.Process().username()
    victims = []
    for proc in psutil.process_iter(["ppid", "name", "cmdline", "username"]):
        try:
            cmd = proc.info["cmdline"] or []
            if proc.info["ppid"] != 1 or proc.info["username"] != me or not cmd:
                continue
            if cmd[0].startswith("ray::") or any("ray/_private" in c or c.endswith("/raylet") for c in cmd[:2]):
                victims.append(proc)
        except (psutil.Error, TypeError):
            continue
    return kill_processes(victims, timeout_s=5.0)


def kill_processes(procs: list[Any], timeout_s: float) -> int:
    """SIGKILL every ``psutil.Process`` of ``procs`` (gone ones are skipped) and wait up to
    ``timeout_s`` for them; returns how many there were."""
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=timeout_s)
    return len(procs)


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address`` (or ``$RAY_ADDRESS``) or start a local Ray with ``num_cpus``; True if we started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    reap_orphans()
    # Local workers get one thread per task: parallelism comes from Ray, not from each library
    # spawning its own pool (which oversubscribes the cores and makes 2 workers slower than 1).
    threads = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env = {"env_vars": {"PYTHONWARNINGS": "ignore::DeprecationWarning", **threads}}
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, runtime_env=env,
             configure_logging=False)
    return True


@ray.remote(num_cpus=1)
def _warm(recipe: Any = None) -> int:
    """Import the tool modules (OpenCV, scikit-image, pymatting's compiled kernels) in a worker; with
    a sample-task ``recipe``, also build its job (graph, policy) and its in-process tools."""
    from add_pipeline.tools.base import available

    _limit_threads()
    available("matte")  # loads every built-in tool module
    import pymatting  # noqa: F401  (its numba kernels load from the disk cache)

    if recipe is not None:
        _worker_job(recipe)
    return os.getpid()


def warm_up(workers: int, recipe: Any = None) -> None:
    """Start-up work done once per worker process before the first sample, not during the run.

    The ``workers`` tasks each need a whole CPU of a ``workers``-CPU Ray, so they run at once, one
    per worker process, and those processes then serve the run's tasks.
    """
    ray.get([_warm.remote(recipe) for _ in range(workers)])


def stop_ray(started: bool) -> None:
    if started and ray.is_initialized():
        ray.shutdown()


class RayToolRunner:
    """:class:`~add_pipeline.exec.runner.ToolRunner` that runs every tool call on Ray."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.retries = workflow.execution.task_retries
        self._actors: dict[ToolSpec, tuple[list[Any], Any]] = {}
        self._batchers: dict[ToolSpec, _MicroBatcher] = {}
        self._lock = threading.Lock()

    def _pool(self, card: ToolCard, spec: ToolSpec) -> tuple[list[Any], Any]:
        with self._lock:
            if spec not in self._actors:
                pool = [ToolActor.options(max_restarts=-1, **_options(card)).remote(spec) for _ in range(card.replicas)]
                self._actors[spec] = (pool, itertools.cycle(pool))
                size = int(card.params.get("batch_size", 1))
                if size > 1:
                    self._batchers[spec] = _MicroBatcher(pool, size)
            return self._actors[spec]

    def _submit(self, card: ToolCard, spec: ToolSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not card.actor:
            return _run_tool.options(max_retries=0, **_options(card)).remote(spec, args, kwargs)
        _, cycle = self._pool(card, spec)
        if spec in self._batchers:
            return self._batchers[spec].submit((args, kwargs))
        with self._lock:
            actor = next(cycle)
        return actor.call.remote(args, kwargs)

    @staticmethod
    def _wait(ref: Any, timeout: float | None) -> tuple[Any, float]:
        if isinstance(ref, Future):  # a micro-batched request
            item: BatchItem = ref.result(timeout=timeout)
            if item.error is not None:
                raise item.error
            return item.value, item.tool_s
        return ray.get(ref, timeout=timeout)

    def call(self, step: str, *args: Any, fallback: bool = False, **kwargs: Any) -> CallResult:
        card = self.workflow.card(step, fallback)
        spec = tool_spec(self.workflow, step, fallback)
        failed: list[Attempt] = []
        for _ in range(self.retries + 1):
            t0 = time.perf_counter()
            ref = self._submit(card, spec, args, kwargs)
            try:
                value, tool_s = self._wait(ref, card.timeout_s)
                return CallResult(value, tool_s, failed)
            except RayTaskError as exc:  # the tool itself raised: not a system error, no retry
                raise exc.as_instanceof_cause() if exc.cause is None else exc.cause from None
            except (GetTimeoutError, FutureTimeout, RayError) as exc:
                if isinstance(exc, GetTimeoutError) and not isinstance(ref, Future):
                    ray.cancel(ref, force=True)
                failed.append(Attempt(f"{type(exc).__name__}: {exc}"[:1000], time.perf_counter() - t0))
        raise ToolSystemError(f"{card.name}: {len(failed)} attempts failed; last: {failed[-1].error}")

    def close(self) -> None:
        for pool, _ in self._actors.values():
            for actor in pool:
                ray.kill(actor)
        self._actors.clear()
        self._batchers.clear()


# ---------------------------------------------------------------- sample-tasks placement

_WORKER_JOBS: dict[Any, Any] = {}


class WorkerToolRunner:
    """On a worker running whole samples: classical tools in this process, actor tools on their actors."""

    def __init__(self, workflow: Workflow) -> None:
        from add_pipeline.exec.runner import LocalToolRunner

        self.workflow = workflow
        self._local = LocalToolRunner(workflow)
        self._remote: RayToolRunner | None = None

    def call(self, step: str, *args: Any, fallback: bool = False, **kwargs: Any) -> CallResult:
        if not self.workflow.card(step, fallback).actor:
            return self._local.call(step, *args, fallback=fallback, **kwargs)
        if self._remote is None:
            self._remote = RayToolRunner(self.workflow)
        return self._remote.call(step, *args, fallback=fallback, **kwargs)

    def prepare(self) -> int:
        """Build the in-process tools now (actors are Ray's to start); returns how many."""
        return self._local.prepare([(s, fb) for s, fb in tool_steps(self.workflow)
                                    if not self.workflow.card(s, fb).actor])

    def close(self) -> None:
        self._local.close()


def _worker_job(recipe: Any) -> tuple[Any, WorkerToolRunner]:
    """The job of ``recipe`` and its tool runner, built once per worker process (tools included)."""
    if recipe not in _WORKER_JOBS:
        _limit_threads()
        job = recipe.build()
        runner = WorkerToolRunner(job.workflow)
        runner.prepare()
        _WORKER_JOBS[recipe] = (job, runner)
    return _WORKER_JOBS[recipe]


@ray.remote
def _run_sample(recipe: Any, item: Any) -> Any:
    """One whole sample on this worker; the job (graph, policy, tools) is built once per process."""
    job, runner = _worker_job(recipe)
    return job.process(item, runner)


def submit_sample(recipe: Any, item: Any, num_cpus: float) -> Future[Any]:
    """Run ``recipe.build().process(item, ...)`` as one Ray task; a concurrent Future of its outcome.

    No automatic Ray retries: the caller sees a system failure and records its own retry.
    """
    ref = _run_sample.options(num_cpus=num_cpus, max_retries=0).remote(recipe, item)
    fut = ref.future()
    fut.ray_ref = ref  # type: ignore[attr-defined]  (so a stuck sample can be cancelled: cancel_task)
    return fut


def cancel_task(ref: Any) -> None:
    """Cancel a running Ray task, killing its worker (Ray starts a fresh one)."""
    ray.cancel(ref, force=True)
