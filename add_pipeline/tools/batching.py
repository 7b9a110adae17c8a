"""Batched tool calls: several requests through one forward pass of a model.

A *request* is ``(args, kwargs)`` for the tool's ``__call__``. :func:`call_batch` runs a list of
them on any tool and returns one :class:`BatchItem` per request, in order: a tool error in one
request is data for that request and does not fail the others.

Tools that gain from batching mix in :class:`BatchedTool` and route their network evaluation
through :meth:`BatchedTool.forward` (``_forward`` takes a *list* of prepared inputs and returns a
list of outputs). In :meth:`BatchedTool.infer_batch` every request runs the tool's full template
(validate inputs, ``infer``, validate outputs) in its own thread; the threads meet at
``forward``, whose inputs are evaluated together in chunks of ``batch_size``. The validation code
is therefore exactly the single-call code, and a request that fails validation simply never joins.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

Request = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one request of a batch: its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None
    tool_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class _Gather:
    """Rendezvous of ``live`` threads: once every live thread waits in :meth:`submit`, run them together."""

    def __init__(self, live: int, forward: Any, batch_size: int) -> None:
        self._cv = threading.Condition()
        self._live = live
        self._waiting: dict[int, Any] = {}
        self._done: dict[int, tuple[Any, BaseException | None]] = {}
        self._forward = forward
        self._batch_size = batch_size
        self._next = 0

    def submit(self, item: Any) -> Any:
        with self._cv:
            key = self._next
            self._next += 1
            self._waiting[key] = item
            self._maybe_fire()
            self._cv.wait_for(lambda: key in self._done)
            value, err = self._done.pop(key)
        if err is not None:
            raise err
        return value

    def leave(self) -> None:
        """A thread finished (or failed before reaching ``submit``): it is no longer awaited."""
        with self._cv:
            self._live -= 1
            self._maybe_fire()

    def _maybe_fire(self) -> None:
        # Called with the lock held. Every live thread is waiting: evaluate them all now.
        if not self._waiting or len(self._waiting) < self._live:
            return
        keys = sorted(self._waiting)
        items = [self._waiting.pop(k) for k in keys]
        for start in range(0, len(items), self._batch_size):
            chunk_keys = keys[start : start + self._batch_size]
            try:
                outs = self._forward(items[start : start + self._batch_size])
                for k, o in zip(chunk_keys, outs, strict=True):
                    self._done[k] = (o, None)
            except Exception as exc:  # the chunk failed: each of its requests gets the error
                for k in chunk_keys:
                    self._done[k] = (None, exc)
        self._cv.notify_all()


class BatchedTool:
    """Mixin for tools whose network runs on a list of prepared inputs (see the module docstring).

    Subclasses implement ``_forward(items: list) -> list`` (one output per item, same order) and
    call :meth:`forward` from ``infer``; they set ``batch_size`` (the largest forward batch).
    """

    batch_size: int = 1
    _gather_local = threading.local()

    def _forward(self, items: list[Any]) -> list[Any]:
        raise NotImplementedError

    def forward(self, item: Any) -> Any:
        """Evaluate one prepared input: alone, or together with the other requests of a batch."""
        gather = getattr(self._gather_local, "gather", None)
        if gather is None:
            return self._forward([item])[0]
        return gather.submit(item)

    def infer_batch(self, requests: list[Request]) -> list[BatchItem]:
        """Run every request through ``__call__``, sharing forward passes; one item per request."""
        if not requests:
            return []
        gather = _Gather(len(requests), self._forward, max(1, int(self.batch_size)))

        def one(req: Request) -> BatchItem:
            self._gather_local.gather = gather
            t0 = time.perf_counter()
            try:
                return BatchItem(value=self(*req[0], **req[1]), tool_s=time.perf_counter() - t0)  # type: ignore[operator]
            except Exception as exc:
                return BatchItem(error=exc, tool_s=time.perf_counter() - t0)
            finally:
                self._gather_local.gather = None
                gather.leave()

        with ThreadPoolExecutor(max_workers=len(requests), thread_name_prefix="batch") as pool:
            return list(pool.map(one, requests))


def call_batch(tool: Any, requests: list[Request]) -> list[BatchItem]:
    """Run ``requests`` on ``tool``: batched if it is a :class:`BatchedTool`, one by one otherwise."""
    if isinstance(tool, BatchedTool):
        return tool.infer_batch(requests)
    out = []
    for args, kwargs in requests:
        t0 = time.perf_counter()
        try:
            out.append(BatchItem(value=tool(*args, **kwargs), tool_s=time.perf_counter() - t0))
        except Exception as exc:
            out.append(BatchItem(error=exc, tool_s=time.perf_counter() - t0))
    return out
