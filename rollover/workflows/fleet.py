"""A fleet's tick: many services advanced in one process, their provider changes sent one per
zone, and the work that waits on the network (DNS observations, TLS probes, reloads) done for
several services at once.

Threads, not processes: every engine of the tick shares one state connection (its stores hold
one lock per statement group, :func:`rollover.state.files.serialized`), one ownership record and
one provider adapter per configured provider. Each service is advanced by one thread at a time,
and a rollover by one process at a time (its lease), so the engine's own reasoning stays
sequential; only the waits overlap. The batch of provider changes runs between the two passes,
in the calling thread, with no engine running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rollover.engine.batching import batch_provider_changes
from rollover.engine.machine import AdvanceResult, Engine
from rollover.errors import RolloverError
from rollover.ports import Batching

Item = TypeVar("Item")
Outcome = AdvanceResult | RolloverError


def in_parallel(
    items: Iterable[Item],
    work: Callable[[Item], None],
    concurrency: int,
    *,
    until: float | None = None,
) -> list[Item]:
    """``work`` on every item, at most ``concurrency`` at once; the first unexpected exception
    (not a :class:`RolloverError`, which ``work`` records itself) is raised once all have run.
    With ``until`` (a :func:`time.monotonic` reading) no item is begun after it; those left
    are returned, in order (work already begun always finishes)."""
    listed = list(items)
    left: set[int] = set()

    def begin(index: int) -> None:
        if until is not None and time.monotonic() >= until:
            left.add(index)
            return
        work(listed[index])

    if concurrency <= 1 or len(listed) <= 1:
        for index in range(len(listed)):
            begin(index)
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(listed))) as pool:
            futures = [pool.submit(begin, index) for index in range(len(listed))]
        for future in futures:
            future.result()
    return [listed[index] for index in sorted(left)]


Result = TypeVar("Result")
_CHUNK_WORK: list[Callable[[list[Any]], dict[str, Any]]] = []  # inherited by forked workers


def _run_chunk(chunk: list[Any], answer: Any) -> None:
    """A forked worker of :func:`in_processes`: its chunk's results, or its exception."""
    try:
        answer.send(("ok", _CHUNK_WORK[0](chunk)))  # set by in_processes before the fork
    except BaseException as exc:  # noqa: BLE001 - carried to the parent, raised there
        answer.send(("error", exc))
    finally:
        answer.close()


def in_processes(
    items: Sequence[Item],
    work: Callable[[list[Item]], dict[str, Result]],
    processes: int,
) -> dict[str, Result]:
    """``work`` over ``items`` split into ``processes`` forked processes, one chunk each, their
    results merged: for work that is CPU-bound in Python (parsing DNS answers, checking
    chains), which threads cannot spread over the cores. One process (or one item) runs here.
    ``work`` and what it closes over are inherited by the fork, never pickled; its results
    (or the exception it raised, raised here) are."""
    listed = list(items)
    processes = max(1, min(processes, len(listed)))
    if processes == 1:
        return work(listed)
    import multiprocessing

    context = multiprocessing.get_context("fork")
    _CHUNK_WORK[:] = [work]
    workers = []
    try:
        for index in range(processes):
            receive, send = context.Pipe(duplex=False)
            worker = context.Process(target=_run_chunk, args=(listed[index::processes], send))
            worker.start()
            send.close()
            workers.append((worker, receive))
    finally:
        _CHUNK_WORK.clear()
    merged: dict[str, Result] = {}
    failure: BaseException | None = None
    for worker, receive in workers:
        try:
            kind, payload = receive.recv()
        except EOFError:
            kind, payload = "error", RuntimeError("a worker process ended without an answer")
        finally:
            receive.close()
        worker.join()
        if kind == "ok":
            merged.update(payload)
        elif failure is None:
            failure = payload
    if failure is not None:
        raise failure
    return merged


def batched_tick(
    engines: Mapping[str, Engine],
    *,
    batched: bool,
    single: bool,
    concurrency: int,
    out: Callable[[str], None],
    warn: Callable[[str], None],
    seconds: float | None = None,
) -> dict[str, Outcome]:
    """One tick: every service advanced. With ``batched``, each first stops at its next
    publish or retire; those changes go out as one per (provider, zone); then the services
    that stopped carry on from there, each on its own (a change the batch did not carry, or
    a batch refused, is then made or waited for service by service). With ``single`` an
    error is raised rather than recorded. With ``seconds``, no service is begun once that
    much time has passed: those left wait for the next tick, first in its order, and a
    service whose batched change was made is carried on only while time is left (the change
    is on record; the next tick goes on from it). Results in the order of ``engines``, for
    the services reached."""
    until = None if seconds is None else time.monotonic() + seconds
    results: dict[str, Outcome] = {}

    def advance(name: str, defer: bool) -> None:
        try:
            results[name] = engines[name].advance(defer_changes=defer)
        except RolloverError as exc:
            if single:
                raise
            results[name] = exc

    left = in_parallel(
        engines,
        lambda name: advance(name, batched and isinstance(engines[name].provider, Batching)),
        concurrency,
        until=until,
    )
    if left:
        out(f"the tick's {seconds:g} s are spent: {len(left)} services left for the next tick")
    stopped = {n for n, r in results.items() if isinstance(r, AdvanceResult) and r.deferred}
    deferred = [name for name in engines if name in stopped]
    if deferred:
        try:
            batch_provider_changes([engines[name] for name in deferred], out, singles=True)
        except RolloverError as exc:
            # One conflict refuses its whole batch: each service goes on its own.
            warn(f"batched provider change: {exc}; going service by service")
        # Their changes are made and on record: one not carried on now (the tick's time is
        # spent) goes on from there at the next tick.
        in_parallel(deferred, lambda name: advance(name, False), concurrency, until=until)
    return {name: results[name] for name in engines if name in results}


__all__ = ["batched_tick", "in_parallel", "in_processes"]
