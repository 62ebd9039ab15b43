"""Reading a long log with several processes: forked workers over consecutive stretches, merged exactly.

A forked process that touches an object copies the memory page it lives on, so the log is cut
into stretches rather than dealt out by case: each process touches only its own rows. See
`review_workers` for when this is used and `read_parallel` for how.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from analytics.fold import CaseReading, ReadContext, scan, summarize
from analytics.readings import CaseSummary, Partial, Tally

WORKERS_ENV = "SVCFLOW_REVIEW_WORKERS"  # how many processes read a long log (see review_workers)
PARALLEL_MIN_EVENTS = 500_000  # shorter logs are read in one process: a worker would cost more than it saves
_CHUNKS_PER_READER = 32  # what readers take at a time (see _Plan): the last chunk is how unevenly they can end
_LEFT_TO_PARENT = 2  # chunks the parent's partner leaves it (see _child)
_CHILD_GRACE_SECONDS = 60.0  # on top of 4x the parent's own reading time, before a child is given up


def _can_fork() -> bool:
    """Whether this process may fork workers (a daemonic multiprocessing worker may not have children)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def review_workers(events: int, workers: int | None = None, *, min_events: int = PARALLEL_MIN_EVENTS) -> int:
    """How many processes read a log of `events` events.

    `workers` (or the environment variable SVCFLOW_REVIEW_WORKERS when it is None) sets the
    number; unset, it is the number of CPUs this process may use. 1 means one process. A log
    shorter than `min_events` is read in one process whatever the setting, because starting a
    worker costs more than it saves there; so is any log where processes cannot be forked.
    """
    if workers is None:
        raw = os.environ.get(WORKERS_ENV, "").strip()
        if raw:
            try:
                workers = int(raw)
            except ValueError:
                raise ValueError(f"{WORKERS_ENV} must be a whole number of processes, got {raw!r}") from None
    if workers is not None and workers < 1:
        raise ValueError(f"the number of review workers must be at least 1, got {workers}")
    count = workers if workers is not None else _cpus()
    if count <= 1 or events < max(min_events, 2) or not _can_fork():
        return 1
    return min(count, events)


class _Plan:
    """How a log is shared out among `count` readers, with what each has taken so far (in shared memory).

    The log is cut into consecutive segments, one per pair of readers. In a segment one reader
    goes forwards from its start and the other backwards from its end, a chunk at a time, until
    they meet: wherever one runs slower, the other reads more, and neither waits. What a reader
    takes is thus one stretch of the log. With an odd count the last segment has one reader.
    """

    def __init__(self, n: int, count: int, context: Any) -> None:
        self.n = n
        self.readers: list[tuple[int, bool]] = []  # (segment, forwards); the parent is the first
        for reader in range(count):
            self.readers.append((reader // 2, reader % 2 == 0))
        segments = (count + 1) // 2
        readers_in = [2] * (count // 2) + [1] * (count % 2)
        self.starts = [round(n * sum(readers_in[:s]) / count) for s in range(segments + 1)]
        self.chunk = max(1, n // (count * _CHUNKS_PER_READER))
        self.chunks = [-(-(self.starts[s + 1] - self.starts[s]) // self.chunk) for s in range(segments)]
        claims: list[int] = []
        for count_s in self.chunks:
            claims += [0, count_s - 1]  # next chunk from the front, next from the back
        self.claims = context.RawArray("q", claims)
        self.lock = context.Lock()

    def claim(self, segment: int, forwards: bool, leave: int = 0) -> int | None:
        """The next chunk of the segment for a reader going that way, or None when the readers have met
        (or only `leave` chunks are left, which the reader leaves to the other)."""
        with self.lock:
            front, back = self.claims[2 * segment], self.claims[2 * segment + 1]
            if back - front < leave:
                return None
            if forwards:
                self.claims[2 * segment] = front + 1
                return front
            self.claims[2 * segment + 1] = back - 1
            return back

    def rows_of(self, segment: int, chunk: int) -> tuple[int, int]:
        lo = self.starts[segment] + chunk * self.chunk
        return lo, min(lo + self.chunk, self.starts[segment + 1])

    def stretch(self, reader: tuple[int, bool]) -> tuple[int, int]:
        """The rows a reader took, once the reading is over: the segment's forward reader has all up to the
        first chunk the backward one took (chunks nobody took, when both failed, included)."""
        segment, forwards = reader
        if (segment, not forwards) not in self.readers:
            return self.starts[segment], self.starts[segment + 1]
        meet = min(self.rows_of(segment, self.claims[2 * segment + 1] + 1)[0], self.starts[segment + 1])
        return (self.starts[segment], meet) if forwards else (meet, self.starts[segment + 1])

    def ends_log(self, reader: tuple[int, bool]) -> bool:
        """Whether the reader's stretch runs to the end of the log: its cases can have no events after it."""
        segment, forwards = reader
        return segment == len(self.chunks) - 1 and not (forwards and (segment, False) in self.readers)


def _window(rows: list[tuple[Any, ...]], lo: int, hi: int) -> tuple[Iterable[tuple[Any, ...]], Callable[[], int]]:
    """rows[lo:hi] without copying, and a function telling the position of the row last handed out."""
    it = iter(rows)
    it.__setstate__(lo)  # type: ignore[attr-defined]
    n = len(rows)
    hint = it.__length_hint__  # type: ignore[attr-defined]
    return islice(it, hi - lo), lambda: n - hint() - 1


def _read_forwards(ctx: ReadContext, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]],
                   cases: dict[str, CaseReading], tally: Tally, orphans: list[int] | None) -> None:
    """Consecutive chunks, in order: as one pass over their stretch."""
    for lo, hi in chunks:
        source, position = _window(rows, lo, hi)
        scan(ctx, source, cases, tally, orphans=orphans, position=position)


def _read_backwards(ctx: ReadContext, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]],
                    cases: dict[str, CaseReading], tally: Tally, orphans: list[int]) -> None:
    """Chunks from the end of a stretch backwards, with the result of one forward pass over it.

    A chunk is read for the cases started in it; the events it holds of other cases wait. Once
    a chunk's cases are known, the waiting events of those cases (all further on in the log) are
    read, in log order, so every case sees its events in order. Events still waiting at the end
    belong to cases started before the stretch: they go to the parent as orphans.
    """
    pending: list[int] = []
    for lo, hi in chunks:
        source, position = _window(rows, lo, hi)
        started: dict[str, CaseReading] = {}
        found: list[int] = []
        scan(ctx, source, started, tally, orphans=found, position=position)
        cases.update(started)
        ready: list[int] = []
        waiting: list[int] = []
        for index in pending:
            case = started.get(rows[index][0])
            if case is None:
                waiting.append(index)
            elif index > case.born:
                ready.append(index)
        if ready:
            ready.sort()
            scan(ctx, map(rows.__getitem__, ready), cases, tally, create=False)
        pending = waiting + found
    orphans += pending


def _claimed(plan: _Plan, segment: int, forwards: bool, leave: int = 0) -> Iterator[tuple[int, int]]:
    while (chunk := plan.claim(segment, forwards, leave)) is not None:
        yield plan.rows_of(segment, chunk)


_Reading = tuple[Partial, CaseSummary | None, list[tuple[Any, ...]], list[int]]  # what a worker sends back


def _read_stretch(ctx: ReadContext, rows: list[tuple[Any, ...]], chunks: Iterable[tuple[int, int]], forwards: bool,
                  ends_log: bool, slowest: int) -> _Reading:
    """A worker's reading, as plain data cheap to send: its counts and runs; its cases summed up when no
    event can follow its stretch, else their state for the replay; the orphans' positions."""
    cases: dict[str, CaseReading] = {}
    tally = Tally()
    orphans: list[int] = []
    if forwards:
        _read_forwards(ctx, rows, chunks, cases, tally, orphans)
    else:
        _read_backwards(ctx, rows, chunks, cases, tally, orphans)
    part = tally.seal().packed()
    if ends_log:
        return part, summarize(cases.items(), slowest).packed(), [], orphans
    return part, None, [case.state(case_id) for case_id, case in cases.items()], orphans


def _child(conn: Any, ctx: ReadContext, rows: list[tuple[Any, ...]], plan: _Plan, reader: tuple[int, bool],
           slowest: int) -> None:
    """A forked worker: pure computation on what it inherited; the result goes back through the pipe."""
    try:
        segment, forwards = reader
        # the parent's partner leaves it the last chunks: it has more to do after reading than the parent has
        # before the children's results come in (sorting, packing and summing up against sorting and summing up)
        leave = _LEFT_TO_PARENT if segment == 0 else 0
        chunks = _claimed(plan, segment, forwards, leave)
        conn.send(_read_stretch(ctx, rows, chunks, forwards, plan.ends_log(reader), slowest))
    except BaseException:  # the parent reads this stretch itself: same code, so a real error shows there
        pass
    finally:
        conn.close()


def read_parallel(ctx: ReadContext, rows: list[tuple[Any, ...]], count: int, slowest: int) -> tuple[Partial, CaseSummary]:
    """This process reads the first stretch, forked children the others (see `_Plan`); then the orphans
    are replayed here, in log order, against the cases they belong to.

    A child that fails, dies or hangs has its stretch read here instead, so a review never
    depends on the children: they only make it faster.
    """
    fork = multiprocessing.get_context("fork")
    plan = _Plan(len(rows), count, fork)
    children: list[tuple[tuple[int, bool], Any, Any]] = []
    readings: list[_Reading] = []
    failed: list[tuple[int, bool]] = []
    finished = False
    try:
        for reader in plan.readers[1:]:
            receiver, sender = fork.Pipe(duplex=False)
            process = fork.Process(target=_child, args=(sender, ctx, rows, plan, reader, slowest), daemon=True)
            try:
                process.start()
            except OSError:  # no process to be had (limits, memory): its partner reads more, the rest is read here
                pass
            sender.close()
            children.append((reader, process, receiver))
        cases: dict[str, CaseReading] = {}
        tally = Tally()
        started = time.perf_counter()
        _read_forwards(ctx, rows, _claimed(plan, 0, True), cases, tally, None)
        # the children read about as much: one that takes far longer is stuck (or starved), not waited for
        patience = _CHILD_GRACE_SECONDS + 4 * (time.perf_counter() - started)
        # while the children finish: sort, and sum up the cases that have ended (no event follows a case's
        # end; should one turn up among the orphans, everything is summed up again below)
        part = tally.seal()
        ended = {case_id for case_id, case in cases.items() if case.end is not None}
        early = summarize(((case_id, cases[case_id]) for case_id in ended), slowest)
        for reader, process, receiver in children:
            result = None
            try:
                if process.pid is not None and receiver.poll(patience):
                    result = receiver.recv()
            except (EOFError, OSError):  # died without a result
                pass
            receiver.close()
            if result is None:
                failed.append(reader)
                if process.pid is not None:  # gone for good before what it took is worked out
                    process.kill()
                    process.join()
            else:
                readings.append(result)
        finished = True
    finally:
        if not finished:
            for _, process, _receiver in children:
                if process.pid is not None:
                    process.kill()
                    process.join()
    for reader in failed:  # every reader has stopped taking chunks: what each took is settled
        readings.append(_read_stretch(ctx, rows, [plan.stretch(reader)], True, plan.ends_log(reader), slowest))
    summary = CaseSummary()
    orphans: list[int] = []
    for child_part, child_cases, states, child_orphans in readings:
        part.add(child_part.unpacked())
        if child_cases is not None:
            summary.add(child_cases.unpacked())
        for state in states:  # cases of a stretch inside the log: they may have events further on
            cases[state[0]] = CaseReading.restore(state)
        orphans += child_orphans
    # a case's events before its case_started are not its own, as in one pass
    replay = [index for index in sorted(orphans)
              if (case := cases.get(rows[index][0])) is not None and index > case.born]
    if replay:
        replayed = Tally()
        scan(ctx, map(rows.__getitem__, replay), cases, replayed, create=False)
        part.add(replayed.seal())
        if any(rows[index][0] in ended for index in replay):
            ended = set()
            early = CaseSummary()
    summary.add(early)
    summary.add(summarize(((case_id, case) for case_id, case in cases.items() if case_id not in ended), slowest))
    for _, process, _receiver in children:  # reaped only now: a child's exit (its memory freed) takes a while
        if process.pid is not None and process.exitcode is None:
            process.join()
    return part, summary
