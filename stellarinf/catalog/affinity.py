"""Each worker of a local Dask cluster on its own cores.

One JAX process already spreads its linear algebra over every core it may use, and XLA's thread flags do not confine
this JAX's CPU runtime (benchmarks/README.md, fit-catalog row). So N worker processes on N cores would each run
threads on all of them: on two cores a second worker added 18 %, on a many-core node they would oversubscribe it.
Pinning worker i to the i-th of N disjoint core sets (Linux CPU affinity, inherited by the threads XLA starts later)
gives each its share. Workers of an external scheduler (``--scheduler``) are left as their cluster placed them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from distributed.diagnostics.plugin import WorkerPlugin


def worker_core_sets(n_workers: int, cores: Sequence[int]) -> list[tuple[int, ...]] | None:
    """``cores`` split into ``n_workers`` contiguous disjoint sets, as even as possible (the first ones one core
    larger); None when there are fewer cores than workers (nothing to gain from pinning then)."""
    cores = sorted(cores)
    if n_workers < 1 or len(cores) < n_workers:
        return None
    size, extra = divmod(len(cores), n_workers)
    out, start = [], 0
    for i in range(n_workers):
        stop = start + size + (1 if i < extra else 0)
        out.append(tuple(cores[start:stop]))
        start = stop
    return out


def pin_this_process(cores: Sequence[int]) -> None:
    """Restrict every thread of this process to ``cores`` (threads started later inherit it); nothing where the
    platform has no CPU affinity."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:  # a thread that ended meanwhile
            pass


class PinWorkers(WorkerPlugin):
    """Worker ``name`` (0, 1, ... in a LocalCluster) runs on ``core_sets[name]``."""

    name = "stellarinf-pin-workers"

    def __init__(self, core_sets: Sequence[Sequence[int]]):
        self.core_sets = [tuple(c) for c in core_sets]

    def setup(self, worker):
        try:
            index = int(worker.name)
        except (TypeError, ValueError):
            return
        pin_this_process(self.core_sets[index % len(self.core_sets)])


def available_cores() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
