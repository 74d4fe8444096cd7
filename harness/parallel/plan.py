"""Which checks run together, and when (pure: values in, decisions out, no I/O).

A *job* is one check. Checks of one cluster key (runtime and topology) that do not fault the
cluster share one cluster, in one *group* run in order by one worker; a check that faults
(kills, pauses, drains or adds a replica) gets a group, and a cluster, of its own. A group
longer than `chunk_s` is cut into chunks, each with its own cluster, so that one topology
with many slow checks does not set the length of the whole run.

The scheduler hands groups to free workers, largest first (LPT on weight times length, since
the capacity is what runs out), while the weights of the running groups fit in the
capacity. A weight is the share of the machine a group keeps busy:
checks that measure time or load weigh more, so that fewer run beside them and their
verdicts stay those of a serial run. A group too heavy to fit still runs, alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    key: str  # the check's id (its pytest node id)
    cluster: str  # checks with the same key may share a cluster
    faults: bool  # leaves its cluster changed, or needs it to itself
    estimate_s: float
    weight: float  # share of the machine it keeps busy while it runs
    order: int = 0  # its place in the serial run
    start_s: float = 1.2  # what starting and stopping its cluster takes


@dataclass(frozen=True)
class Group:
    jobs: tuple[Job, ...]

    @property
    def cluster(self) -> str:
        return self.jobs[0].cluster

    @property
    def estimate_s(self) -> float:
        return self.jobs[0].start_s + sum(j.estimate_s for j in self.jobs)

    @property
    def weight(self) -> float:
        return max(j.weight for j in self.jobs)

    def priority(self) -> tuple[float, float, int]:
        """Sort key: largest area (weight x length) first, then longest, then serial order."""
        return (-self.weight * self.estimate_s, -self.estimate_s, self.jobs[0].order)


def plan_groups(jobs: Iterable[Job], chunk_s: float = 30.0) -> list[Group]:
    """Groups of `jobs`, longest first; within a group jobs keep their serial order."""
    shared: dict[str, list[Job]] = {}
    groups: list[Group] = []
    for job in sorted(jobs, key=lambda j: j.order):
        if job.faults:
            groups.append(Group((job,)))
        else:
            shared.setdefault(job.cluster, []).append(job)
    for members in shared.values():
        groups.extend(_chunks(members, chunk_s))
    return sorted(groups, key=Group.priority)


def _chunks(jobs: Sequence[Job], chunk_s: float) -> list[Group]:
    """Cut `jobs` into about equal runs of at most `chunk_s` each (one if they fit), keeping
    jobs of equal weight together so that a light check does not wait in a heavy group."""
    by_weight: dict[float, list[Job]] = {}
    for job in jobs:
        by_weight.setdefault(job.weight, []).append(job)
    out: list[Group] = []
    for members in by_weight.values():
        total = sum(j.estimate_s for j in members)
        count = max(1, min(len(members), round(total / chunk_s + 0.49)))
        target = total / count
        chunk: list[Job] = []
        length = 0.0
        for job in members:
            if chunk and length + job.estimate_s / 2 > target:
                out.append(Group(tuple(chunk)))
                chunk, length = [], 0.0
            chunk.append(job)
            length += job.estimate_s
        out.append(Group(tuple(chunk)))
    return out


class Scheduler:
    """Hands out groups: `take()` the next one a free worker may start now, `done(group)`
    when it ends. The pending list is kept in priority order (largest first)."""

    def __init__(self, groups: Iterable[Group], workers: int, capacity: float = 1.0,
                 patience: int = 3):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.pending = sorted(groups, key=Group.priority)
        self.workers = workers
        self.capacity = capacity
        self.running: list[Group] = []
        self.patience = patience
        self._passed: dict[int, int] = {}  # id(group) -> times a lighter one went first

    @property
    def finished(self) -> bool:
        return not self.pending and not self.running

    def load(self) -> float:
        return sum(g.weight for g in self.running)

    def take(self) -> Group | None:
        """The group to start now, or None. A group that does not fit may be passed over
        by lighter ones (backfill) `patience` times; after that nothing else starts until it
        fits, so that a heavy group is not starved by a stream of light ones."""
        if len(self.running) >= self.workers or not self.pending:
            return None
        room = self.capacity - self.load() + 1e-9
        head = self.pending[0]
        if head.weight <= room or not self.running:
            chosen: Group | None = head  # a group too heavy to share the machine runs alone
        elif self._passed.get(id(head), 0) >= self.patience:
            return None  # hold the room that frees up for the head
        else:
            chosen = next((g for g in self.pending[1:] if g.weight <= room), None)
            if chosen is not None:
                self._passed[id(head)] = self._passed.get(id(head), 0) + 1
        if chosen is not None:
            self.pending.remove(chosen)
            self.running.append(chosen)
        return chosen

    def done(self, group: Group) -> None:
        self.running.remove(group)

    def requeue(self, jobs: Sequence[Job]) -> None:
        """Put back the jobs a failed worker did not get to, as one group."""
        if jobs:
            group = Group(tuple(jobs))
            self.pending.append(group)
            self.pending.sort(key=Group.priority)


def simulate(groups: Sequence[Group], workers: int, capacity: float = 1.0) -> float:
    """The makespan in seconds if every group takes its estimate (virtual time, no clock)."""
    scheduler = Scheduler(groups, workers, capacity)
    now = 0.0
    ends: list[tuple[float, int, Group]] = []
    tick = 0
    while not scheduler.finished:
        while (group := scheduler.take()) is not None:
            tick += 1
            ends.append((now + group.estimate_s, tick, group))
        ends.sort(key=lambda e: (e[0], e[1]))
        now, _, group = ends.pop(0)
        scheduler.done(group)
    return now
