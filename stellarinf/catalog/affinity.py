"""Each worker of a local Dask cluster on its own cores, and on its own GPU where the machine has them.

Cores: one JAX process already spreads its linear algebra over every core it may use, and XLA's thread flags do not
confine this JAX's CPU runtime (benchmarks/README.md, fit-catalog row). So N worker processes on N cores would each run
threads on all of them: on two cores a second worker added 18 %, on a many-core node they would oversubscribe it.
Pinning worker i to the i-th of N disjoint core sets (Linux CPU affinity, inherited by the threads XLA starts later)
gives each its share.

GPUs: a JAX process takes every GPU it sees and reserves 75 % of each one's memory when it starts, so a second worker
on the same GPUs runs out of memory. On a machine with NVIDIA GPUs the local cluster has one worker per GPU (by
default) and worker i sees only GPU i (``CUDA_VISIBLE_DEVICES``, set before its process starts); workers sharing a
GPU (``--workers`` above the GPU count) split its memory. Within a worker the stars are fitted one at a time
(:func:`stellarinf.fit_spectrum`); the library's :func:`stellarinf.fit_spectra` is the path that vmaps a chunk of
stars into one program on a GPU (:func:`stellarinf.inference.batch.map_laplace_batch`: 27 stars/s MAP + Laplace on
one H200, benchmarks/README.md).

Workers of an external scheduler (``--scheduler``) are left as their cluster placed them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence

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


# JAX's default share of a GPU's memory for one process (XLA_PYTHON_CLIENT_MEM_FRACTION)
JAX_GPU_MEMORY_FRACTION = 0.75


def visible_gpus(environ: Mapping[str, str] | None = None, dev: str = "/dev") -> list[str]:
    """The NVIDIA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` entries), found without starting JAX: a client
    that initialised CUDA would reserve most of a GPU's memory before any worker does. ``CUDA_VISIBLE_DEVICES`` when set
    (CUDA stops at the first negative entry: ``-1`` hides them all), else the ``/dev/nvidiaN`` device files; none
    where ``JAX_PLATFORMS`` names platforms without ``cuda``/``gpu`` (the user asked for the CPU)."""
    environ = os.environ if environ is None else environ
    platforms = environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not ({"cuda", "gpu"} & {p.strip() for p in platforms.split(",")}):
        return []
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        gpus = []
        for entry in (v.strip() for v in value.split(",")):
            if not entry or entry.startswith("-"):
                break
            gpus.append(entry)
        return gpus
    try:
        names = os.listdir(dev)
    except OSError:
        return []
    return sorted((n[len("nvidia") :] for n in names if re.fullmatch(r"nvidia\d+", n)), key=int)


def gpu_worker_envs(n_workers: int, gpus: Sequence[str]) -> list[dict[str, str]]:
    """Worker i's environment: ``CUDA_VISIBLE_DEVICES`` = GPU ``i mod len(gpus)``; where k workers share a GPU each may
    take 1/k of JAX's usual 75 % of its memory (``XLA_PYTHON_CLIENT_MEM_FRACTION``)."""
    gpus = list(gpus)
    if not gpus:
        raise ValueError("no GPUs to place workers on")
    mine = [gpus[i % len(gpus)] for i in range(n_workers)]
    envs = []
    for gpu in mine:
        env = {"CUDA_VISIBLE_DEVICES": gpu}
        sharing = mine.count(gpu)
        if sharing > 1:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{JAX_GPU_MEMORY_FRACTION / sharing:.3f}"
        envs.append(env)
    return envs


def start_local_cluster(workers: int | None, n_chunks: int, echo: Callable[[str], object]):
    """A local Dask cluster for a run and its client: ``workers`` processes (default: one per GPU where there are
    NVIDIA GPUs, else one per core; never more than ``n_chunks``), one thread each, each on its own cores and GPU."""
    from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

    gpus = visible_gpus()
    n = max(1, min(workers or len(gpus) or os.cpu_count() or 1, n_chunks))
    core_sets = worker_core_sets(n, available_cores()) if n > 1 else None
    where = f", each on {len(core_sets[-1])}+ of the machine's cores" if core_sets else ""
    envs = gpu_worker_envs(n, gpus) if gpus else None
    if envs:
        where += ", GPUs (CUDA_VISIBLE_DEVICES) " + ", ".join(e["CUDA_VISIBLE_DEVICES"] for e in envs)
    echo(f"starting a local Dask cluster: {n} worker process{'es' if n > 1 else ''}, 1 thread each{where}")
    if envs:
        # per-worker environments need a cluster spec: a LocalCluster gives every worker the same one
        spec = {"nthreads": 1, "silence_logs": logging.ERROR}
        cluster = SpecCluster(
            workers={i: {"cls": Nanny, "options": {**spec, "env": env}} for i, env in enumerate(envs)},
            scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}},
            silence_logs=logging.ERROR,
        )
    else:
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        )
    client = Client(cluster)
    if core_sets:  # one JAX process uses every core it may: give each worker its own
        client.register_plugin(PinWorkers(core_sets))
    return cluster, client
