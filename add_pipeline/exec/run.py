"""The main job: inputs in, layered shards + traces + rejects out, resumable.

Photos are processed by one LangGraph run each, many in flight (bounded), in
driver threads; the graph's tool calls go to Ray (or run in process with
``local=True``).  Completed samples are committed in batches by
:class:`~add_pipeline.io.shards.ShardStore`; a rerun skips committed ids, so a
run killed at any point and restarted ends with every input exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from add_pipeline import __version__
from add_pipeline.agents.graph import build_graph
from add_pipeline.agents.policy import Policy, build_policy
from add_pipeline.core.config import Workflow, load_workflow
from add_pipeline.core.redact import redact
from add_pipeline.exec.fallback import runnable_workflow
from add_pipeline.exec.runner import LocalToolRunner, ToolRunner
from add_pipeline.exec.sample import SampleOutcome, decompose_one
from add_pipeline.exec.stats import compute_stats
from add_pipeline.io.card import CARD_FILE, is_ours, write_card
from add_pipeline.io.inputs import InputItem, enumerate_inputs
from add_pipeline.io.layered import SCHEMA_VERSION
from add_pipeline.io.lock import OutputLockedError, output_lock
from add_pipeline.io.shards import ShardStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """Options of ``liwi run`` (the CLI flags map one to one)."""

    input: str
    out: Path
    workflow: str = "cpu-default"
    limit: int | None = None
    shard_size: int = 64
    workers: int | None = None
    seed: int = 0
    ray_address: str | None = None
    overwrite: bool = False
    local: bool = False
    license: str = "unknown"  # the data's licence id, for the dataset card (OUT/README.md)
    progress: bool = True
    ray_timeout_s: float = 15.0


class RunError(RuntimeError):
    """The run cannot start (bad options, an output folder from another workflow, ...)."""


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "add_pipeline": __version__, "platform": platform.platform()}
    for pkg in ("numpy", "opencv-contrib-python-headless", "torch", "onnx", "scikit-image", "pymatting", "pyarrow",
                "ray", "langgraph"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def _check_resumable(out: Path, wf: Workflow, overwrite: bool) -> None:
    """Refuse to resume into ``out`` if ``run.json`` or any commit marker names another workflow."""
    if overwrite:
        return
    prev = out / "run.json"
    store = ShardStore(out)
    old_versions = sorted(v for v in store.schema_versions() if v != SCHEMA_VERSION)
    if old_versions:
        raise RunError(f"{out} holds parts of shard schema v{old_versions[0]} (an older liwi wrote them); they "
                       f"stay readable (LayeredShards, liwi export, liwi eval), but a run writes v{SCHEMA_VERSION} and "
                       "cannot add to them: choose another --out, or pass --overwrite to start over")
    seen = set(store.workflow_hashes())
    if prev.exists():
        try:
            old = json.loads(prev.read_text()).get("workflow_hash")
        except (OSError, ValueError) as exc:
            raise RunError(f"{prev}: unreadable ({exc}); delete it (the commit markers say what is done) "
                           "or pass --overwrite") from exc
        if old:
            seen.add(old)
    other = sorted(h for h in seen if h != wf.digest())
    if other:
        raise RunError(f"{out} holds output of a different workflow configuration (hash {other[0][:12]} != "
                       f"{wf.digest()[:12]}); pass --overwrite to start over or choose another --out")


@contextmanager
def _runner(local: bool, ray_address: str | None, wf: Workflow, workers: int,
            recipe: Any = None) -> Iterator[ToolRunner]:
    if local:
        runner: ToolRunner = LocalToolRunner(wf)
        try:
            yield runner
        finally:
            runner.close()
        return
    from add_pipeline.exec.ray_exec import RayToolRunner, start_ray, stop_ray, warm_up  # Ray only when asked for

    started = start_ray(ray_address, None if ray_address else workers)
    if started:
        warm_up(workers, recipe)
    runner = RayToolRunner(wf)
    try:
        yield runner
    finally:
        runner.close()
        stop_ray(started)


def _policy(wf: Workflow, out: Path) -> Policy:
    options = dict(wf.policy.options)
    if wf.policy.name == "openai":
        options.setdefault("cache_dir", str(out / ".policy-cache"))
    return build_policy(wf.policy.name, **options)


class _Batcher:
    """Buffers outcomes and commits them in batches of ``shard_size`` samples."""

    def __init__(self, store: ShardStore, shard_size: int, workflow_hash: str | None = None) -> None:
        self.store, self.size, self.workflow_hash = store, shard_size, workflow_hash
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.traces: list[dict[str, Any]] = []

    def add(self, o: SampleOutcome) -> None:
        if o.row is not None:
            self.rows.append(o.row)
        if o.reject is not None:
            self.rejects.append(o.reject)
        self.traces.extend(o.traces)
        if len(self.rows) + len(self.rejects) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.rows or self.rejects:
            self.store.commit(self.rows, self.rejects, self.traces, workflow_hash=self.workflow_hash)
        self.rows, self.rejects, self.traces = [], [], []


class Job(Protocol):
    """One kind of per-item work (decompose a photo, compose a sample) that :func:`execute` schedules."""

    workflow: Workflow

    def process(self, item: InputItem, runner: ToolRunner) -> SampleOutcome:
        """Run one item; per-item problems come back as a reject, never as an exception."""
        ...

    def recipe(self) -> Any:
        """A small, hashable, picklable object whose ``build()`` makes an equivalent job on a worker
        (for ``execution.placement: sample-tasks``), or None if the job cannot run there."""
        ...


@dataclass(frozen=True)
class ExecOptions:
    """How to run a job: where, with how many workers, committing how often."""

    out: Path
    workers: int
    shard_size: int = 64
    ray_address: str | None = None
    overwrite: bool = False
    local: bool = False
    progress: bool = True
    own_entries: tuple[str, ...] = ()  # names in OUT the caller put there itself (e.g. synth's photos/)


#: What a run writes at the top of OUT; anything else there is someone else's.
OUR_ENTRIES = ("shards", "traces", "rejects", "_commits", "run.json", "run.json.tmp", "stats.json", "stats.json.tmp",
               "README.md", "README.md.tmp",
               "checkpoints.sqlite", "checkpoints.sqlite-wal", "checkpoints.sqlite-shm", ".liwi.lock",
               ".policy-cache")


def _check_foreign(out: Path, ex: ExecOptions) -> None:
    """Refuse an ``OUT`` that holds files no run wrote (a typo'd path, someone's folder), unless
    ``--overwrite`` (which still deletes only our own files)."""
    if ex.overwrite or (out / "run.json").exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in OUR_ENTRIES + ex.own_entries
                     or (p.name == CARD_FILE and not is_ours(p)))
    if foreign:
        raise RunError(f"{out} holds files that no liwi run wrote ({', '.join(foreign[:3])}"
                       f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new --out, or pass --overwrite "
                       "to write beside them (only liwi's own files are ever deleted)")


def prepare_out(items: list[InputItem], wf: Workflow, ex: ExecOptions, run_info: dict[str, Any]) -> list[InputItem]:
    """Create/clean ``out``, refuse a different workflow, write ``run.json``; return the items still to do."""
    if ex.shard_size < 1:
        raise RunError(f"shard size must be >= 1, got {ex.shard_size}")
    if ex.workers < 1:
        raise RunError(f"workers must be >= 1, got {ex.workers}")
    out = ex.out
    out.mkdir(parents=True, exist_ok=True)
    _check_foreign(out, ex)
    _check_resumable(out, wf, ex.overwrite)
    store = ShardStore(out)
    store.prepare(overwrite=ex.overwrite)
    for note in store.dropped_parts:
        log.warning("%s: %s; its samples are redone", out, note)
    if ex.overwrite:
        for stale in ("checkpoints.sqlite", "stats.json"):
            (out / stale).unlink(missing_ok=True)
    counts = store.id_counts()
    done = set(counts)
    duplicates = sorted(sid for sid, c in counts.items() if c > 1)
    if duplicates:
        log.warning("%s: %d sample ids are committed more than once (e.g. %s); liwi stats lists them",
                    out, len(duplicates), ", ".join(duplicates[:3]))
    todo = [i for i in items if i.sample_id not in done]
    _write_json(out / "run.json", redact({
        **run_info, "exec": {**asdict(ex), "out": str(ex.out)},
        "workflow": wf.model_dump(mode="json"), "workflow_hash": wf.digest(), "seed": wf.seed,
        "versions": _versions(), "inputs": len(items), "already_done": len(items) - len(todo),
        "duplicates_on_start": len(duplicates), "dropped_parts": store.dropped_parts,
    }))
    return todo


def execute(todo: list[InputItem], job: Job, ex: ExecOptions) -> dict[str, Any]:
    """Process ``todo`` with ``job``, many in flight, committing in batches; returns the run's stats."""
    wf = job.workflow
    batcher = _Batcher(ShardStore(ex.out), ex.shard_size, wf.digest())
    t0 = time.perf_counter()
    t_ready = t_done = t0
    driver_cpu = 0.0
    counts = {"accepted": 0, "rejected": 0}
    tool_s = sample_s = 0.0
    window = ex.workers * wf.execution.in_flight_per_worker
    saver = getattr(getattr(job, "graph", None), "checkpointer", None)
    sample_tasks = wf.execution.placement == "sample-tasks" and not ex.local
    recipe = job.recipe() if sample_tasks else None
    with _runner(ex.local, ex.ray_address, wf, ex.workers, recipe) as runner, ThreadPoolExecutor(
        max_workers=window, thread_name_prefix="graph"
    ) as pool, tqdm(total=len(todo), unit="img", disable=not ex.progress, dynamic_ncols=True) as bar:
        t_ready, cpu_ready = time.perf_counter(), time.process_time()
        submit = _submitter(job, ex, pool, runner)
        pending: dict[Future[SampleOutcome], tuple[InputItem, list[dict[str, Any]]]] = {}
        started: dict[Future[SampleOutcome], float] = {}
        limit = wf.execution.sample_timeout_s

        def launch(item: InputItem, retries: list[dict[str, Any]]) -> None:
            fut = submit(item)
            pending[fut], started[fut] = (item, retries), time.perf_counter()

        queue = iter(todo)
        for item in queue:
            launch(item, [])
            if len(pending) >= window:
                break
        while pending:
            deadline = min(started[f] for f in pending) + limit - time.perf_counter() if limit else None
            finished, _ = wait(list(pending), timeout=None if deadline is None else max(deadline, 0.05),
                               return_when=FIRST_COMPLETED)
            now = time.perf_counter()
            expired = [f for f in pending if limit and f not in finished and now - started[f] >= limit]
            done: list[SampleOutcome] = []
            for fut in finished:
                item, retries = pending.pop(fut)
                started.pop(fut, None)
                outcome = _outcome(fut, item, retries, wf)
                if outcome is None:  # a system failure of a sample task: retried, and the retry recorded
                    launch(item, retries)
                    continue
                done.append(outcome)
            for fut in expired:  # stuck: rejected with the reason, and the run goes on without it
                item, retries = pending.pop(fut)
                _abandon(fut)
                done.append(_timed_out(item, retries, wf, now - started.pop(fut)))
            for outcome in done:
                if outcome.checkpoint is not None and saver is not None:
                    config, checkpoint, metadata = outcome.checkpoint
                    saver.put(config, checkpoint, metadata, checkpoint.get("channel_versions", {}))
                batcher.add(outcome)
                tool_s += sum(outcome.tool_seconds.values())
                sample_s += outcome.wall_s
                counts["accepted" if outcome.row is not None else "rejected"] += 1
                bar.update(1)
                bar.set_postfix(ok=counts["accepted"], rej=counts["rejected"])
                nxt = next(queue, None)
                if nxt is not None:
                    launch(nxt, [])
        batcher.flush()
        t_done, driver_cpu = time.perf_counter(), time.process_time() - cpu_ready
    stats = compute_stats(ex.out)
    processing = t_done - t_ready
    stats["last_run"] = {"processed": len(todo), **counts, "wall_s": time.perf_counter() - t0,
                         "startup_s": t_ready - t0, "processing_s": processing, "workers": ex.workers,
                         "images_per_s": len(todo) / max(processing, 1e-9), "tool_s": tool_s,
                         "sample_s": sample_s, "driver_cpu_s": driver_cpu}
    _write_json(ex.out / "stats.json", stats)
    write_card(ex.out, stats)
    return stats


def _submitter(job: Job, ex: ExecOptions, pool: ThreadPoolExecutor, runner: ToolRunner) -> Any:
    """``item -> Future[SampleOutcome]``: a driver thread running the graph (tool-tasks, or local), or
    one Ray task per sample (sample-tasks)."""
    if job.workflow.execution.placement == "sample-tasks" and not ex.local:
        recipe = job.recipe()
        if recipe is None:
            raise RunError(f"workflow {job.workflow.name!r} asks for sample-tasks, which this stage does not support")
        from add_pipeline.exec.ray_exec import submit_sample

        return lambda item: submit_sample(recipe, item, num_cpus=1.0)
    return lambda item: pool.submit(job.process, item, runner)


def _abandon(fut: Future[SampleOutcome]) -> None:
    """Stop a stuck sample: a Ray sample task is cancelled (its worker killed); a driver thread
    cannot be stopped, so its future is only dropped (its result, if it ever comes, is ignored)."""
    if not fut.cancel():
        ref = getattr(fut, "ray_ref", None)
        if ref is not None:
            from add_pipeline.exec.ray_exec import cancel_task

            cancel_task(ref)


def _timed_out(item: InputItem, retries: list[dict[str, Any]], wf: Workflow, waited: float) -> SampleOutcome:
    """The reject of a sample that gave no result within ``execution.sample_timeout_s``."""
    return SampleOutcome(item.sample_id, None, {
        "sample_id": item.sample_id, "source": item.source, "stage": "timeout",
        "reason": f"{item.source}: no result after {waited:.0f} s (execution.sample_timeout_s = "
                  f"{wf.execution.sample_timeout_s:g})",
        "trace_id": "", "workflow": wf.name, "rejected_at": datetime.now(timezone.utc)}, retries)


def _outcome(fut: Future[SampleOutcome], item: InputItem, retries: list[dict[str, Any]],
             wf: Workflow) -> SampleOutcome | None:
    """The outcome of a finished future; None when a sample task failed for a system reason and
    may be retried (the failure is kept in ``retries`` and lands in the sample's trace)."""
    try:
        outcome = fut.result()
    except Exception as exc:  # only sample tasks raise here: decompose_one turns errors into rejects
        row = {"trace_id": "", "sample_id": item.sample_id, "seq": 0, "node": "sample", "tool": None,
               "started_at": datetime.now(timezone.utc), "duration_s": 0.0, "input": "{}", "output": "{}",
               "decision": '{"retry": true}', "error": f"{type(exc).__name__}: {exc}"[:2000], "attempt": 0}
        retries.append(row)
        if len(retries) <= wf.execution.task_retries:
            return None
        return SampleOutcome(item.sample_id, None, {
            "sample_id": item.sample_id, "source": item.source, "stage": "system",
            "reason": f"sample task failed {len(retries)} times; last: {row['error']}"[:500],
            "trace_id": "", "workflow": wf.name, "rejected_at": datetime.now(timezone.utc)}, retries)
    if retries:  # earlier failed attempts go first in this sample's trace, under its trace id
        fixed = [{**r, "trace_id": outcome.traces[0]["trace_id"] if outcome.traces else ""} for r in retries]
        outcome.traces[:0] = fixed
        for seq, r in enumerate(outcome.traces):
            r["seq"] = seq
    return outcome


@contextmanager
def checkpointer(out: Path, enabled: bool) -> Iterator[Any]:
    """A LangGraph SqliteSaver on ``out/checkpoints.sqlite`` (None when disabled)."""
    if not enabled:
        yield None
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(out / "checkpoints.sqlite", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")  # many graph threads write; WAL keeps commits cheap
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


@dataclass
class DecomposeJob:
    """Decompose one photo through the ADD graph."""

    workflow: Workflow
    graph: Any
    policy: Policy
    out: Path

    def process(self, item: InputItem, runner: ToolRunner) -> SampleOutcome:
        return decompose_one(item, self.graph, self.workflow, runner, self.policy, self.workflow.name)

    def recipe(self) -> DecomposeRecipe:
        return DecomposeRecipe(self.workflow.model_dump_json(), str(self.out))


@dataclass(frozen=True)
class DecomposeRecipe:
    """What a worker needs to build the decompose job: the resolved workflow (JSON) and OUT."""

    workflow_json: str
    out: str

    def build(self) -> DecomposeJob:
        from langgraph.checkpoint.memory import InMemorySaver

        wf = Workflow.model_validate_json(self.workflow_json)
        # Checkpoints stay in memory on the worker; each sample's last one goes to the driver's SQLite.
        saver = InMemorySaver() if wf.execution.checkpoint_graphs else None
        return DecomposeJob(wf, build_graph(saver), _policy(wf, Path(self.out)), Path(self.out))


def run(opts: RunOptions) -> dict[str, Any]:
    """Run the decompose stage; returns the stats written to ``OUT/stats.json``."""
    check_cluster(opts.ray_address, opts.local, opts.ray_timeout_s)  # before anything touches OUT
    wf, fallback = runnable_workflow(load_workflow(opts.workflow).model_copy(update={"seed": opts.seed}))
    ex = ExecOptions(out=opts.out, workers=opts.workers or os.cpu_count() or 1, shard_size=opts.shard_size,
                     ray_address=opts.ray_address, overwrite=opts.overwrite, local=opts.local,
                     progress=opts.progress)
    items: list[InputItem] = enumerate_inputs(opts.input)
    if opts.limit is not None:
        items = items[: opts.limit]
    with exclusive(ex.out):
        todo = prepare_out(items, wf, ex, {"stage": "decompose", "options": {**asdict(opts), "out": str(opts.out)},
                                           "fallback": fallback})
        with checkpointer(ex.out, wf.execution.checkpoint_graphs) as saver:
            return execute(todo, DecomposeJob(wf, build_graph(saver), _policy(wf, ex.out), ex.out), ex)


def check_cluster(address: str | None, local: bool, timeout_s: float) -> None:
    """Raise :class:`RunError` at once if the Ray cluster to join cannot be reached in ``timeout_s``."""
    address = address or os.environ.get("RAY_ADDRESS")
    if local or not address:
        return
    from add_pipeline.exec.ray_exec import unreachable

    why = unreachable(address, timeout_s)
    if why:
        shown = redact(address)
        raise RunError(f"cannot reach the Ray cluster at {shown} within {timeout_s:g} s ({why}); check "
                       "--ray-address / RAY_ADDRESS, or drop it to run on a local Ray")


@contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Be the only writer of ``out`` for the ``with`` body (:func:`~add_pipeline.io.lock.output_lock`);
    a second writer gets a :class:`RunError` naming the one that holds it."""
    with ExitStack() as stack:
        try:
            stack.enter_context(output_lock(out))
        except OutputLockedError as exc:
            raise RunError(str(exc)) from None
        yield
