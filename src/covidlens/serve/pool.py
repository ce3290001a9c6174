"""A bounded pool of inference workers.

Each worker is a thread with its own copy of the models: PyTorch releases the interpreter lock while
it computes, and Grad-CAM puts hooks on a model, so two requests must never share one model object.
Requests are admitted before their body is read: at most ``workers + queue_size`` are in the server
at once (running, waiting, or still uploading), which bounds memory; the next is refused at once with
:class:`QueueFull`, which the app answers with 503 and Retry-After. Admitted jobs run in arrival order.

Requests that can share a forward pass (a :class:`Batchable` job function: predict on single images)
are run together: a worker that takes one such job also takes the jobs of the same function waiting
right behind it, up to ``max_batch``, and answers each on its own. On a CPU a batch of 16 costs much
less than 16 single passes, so under a burst the queue drains faster and the tail latency drops;
a lone request is not held back waiting for company.

A job that outlives its request's time limit is answered 504, but the thread cannot be stopped: its
admission is released only when the job really ends, so the bound stays true.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

log = logging.getLogger("covidlens.serve")


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full, retry after {retry_after} s")
        self.retry_after = retry_after


class JobTimeout(Exception):
    pass


class Batchable:
    """A job function that can also run the arguments of several requests at once.

    ``single(state, *args)`` answers one request; ``many(state, [args, ...])`` answers several and
    returns one result or exception per request, in order (one request's bad upload must not fail
    the others).
    """

    def __init__(self, single: Callable[..., Any], many: Callable[[Any, list[tuple]], list[Any]], max_batch: int = 16):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.single, self.many, self.max_batch = single, many, max_batch
        self.__name__ = getattr(single, "__name__", "batchable")

    def __call__(self, state: Any, *args: Any) -> Any:
        return self.single(state, *args)


_STOP = object()


class Ticket:
    """One admitted request; released exactly once, when its job ends or when the request gives up
    before handing a job over."""

    def __init__(self, pool: "InferencePool"):
        self._pool = pool
        self._released = False
        self._submitted = False

    def _release(self) -> None:
        with self._pool._lock:
            if not self._released:
                self._released = True
                self._pool._admitted -= 1

    async def run(self, fn: Callable[..., Any], *args, timeout: float) -> Any:
        """Run ``fn(worker_state, *args)`` on a worker; raise :class:`JobTimeout` after ``timeout`` seconds."""
        future: Future = Future()
        self._submitted = True
        self._pool._jobs.put((fn, args, future, self))
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except asyncio.TimeoutError:
            raise JobTimeout() from None

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        if not self._submitted:
            self._release()


class InferencePool:
    """``workers`` threads, each calling ``make_state(i)`` once for its own models."""

    def __init__(self, make_state: Callable[[int], Any], workers: int = 1, queue_size: int = 8):
        if workers < 1 or queue_size < 0:
            raise ValueError("workers must be at least 1 and queue_size at least 0")
        self.workers = workers
        self.capacity = workers + queue_size
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0
        self._accepting = True
        self._mean_seconds = 1.0
        states = [make_state(i) for i in range(workers)]
        self._threads = [
            threading.Thread(target=self._work, args=(state,), name=f"covidlens-worker-{i}", daemon=True)
            for i, state in enumerate(states)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def accepting(self) -> bool:
        return self._accepting

    def admit(self) -> Ticket:
        """A ticket for one request, or :class:`QueueFull` (also while shutting down)."""
        with self._lock:
            if not self._accepting or self._admitted >= self.capacity:
                waiting = max(self._admitted - self.workers + 1, 1)
                raise QueueFull(max(1, math.ceil(self._mean_seconds * waiting / self.workers)))
            self._admitted += 1
        return Ticket(self)

    def _work(self, state: Any) -> None:
        held = None
        while True:
            job, held = (held if held is not None else self._jobs.get()), None
            if job is _STOP:
                return
            fn = job[0]
            if not isinstance(fn, Batchable) or fn.max_batch == 1:
                self._run_one(state, job)
                continue
            group = [job]
            while len(group) < fn.max_batch:
                try:
                    following = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if following is not _STOP and following[0] is fn:
                    group.append(following)
                else:  # another kind of job, or the stop: it runs next, in its turn
                    held = following
                    break
            if len(group) == 1:
                self._run_one(state, job)
            else:
                self._run_group(state, fn, group)

    def _run_one(self, state: Any, job) -> None:
        fn, args, future, ticket = job
        start = time.perf_counter()
        try:
            if future.set_running_or_notify_cancel():
                future.set_result(fn(state, *args))
        except BaseException as exc:  # the request answers 500; the worker lives on
            future.set_exception(exc)
        finally:
            self._timed(time.perf_counter() - start)
            ticket._release()

    def _run_group(self, state: Any, fn: Batchable, group: list) -> None:
        start = time.perf_counter()
        live = [job for job in group if job[2].set_running_or_notify_cancel()]
        try:
            results = fn.many(state, [job[1] for job in live]) if live else []
            if len(results) != len(live):
                raise RuntimeError(f"a batched job gave {len(results)} results for {len(live)} requests")
            for (_, _, future, _), result in zip(live, results):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as exc:  # the whole batch failed: every request in it answers 500
            for _, _, future, _ in live:
                if not future.done():
                    future.set_exception(exc)
        finally:
            seconds = (time.perf_counter() - start) / len(group)
            for _ in group:
                self._timed(seconds)
            for job in group:
                job[3]._release()

    def _timed(self, seconds: float) -> None:
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def shutdown(self, timeout: float = 30.0) -> None:
        """Refuse new requests, let queued and running jobs finish, then stop the threads."""
        self._accepting = False
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sum(t.is_alive() for t in self._threads)
        if alive:
            log.warning("%d inference worker(s) still busy after %.0f s at shutdown", alive, timeout)
