"""Map a function over independent lanes (chains, optimiser starts, draws): vectorised on accelerators,
one after another on CPU.

Why not ``vmap`` everywhere: on CPU a vmapped observation model is slower than a loop over lanes. Each
chain has its own v sin i, so the broadening convolutions become grouped convolutions, the small dense
solves of the marginal likelihood become batched ones, and a vmapped ``while_loop`` (NUTS trees, L-BFGS)
runs every lane until the slowest is done. Measured with the shipped Payne (2,697 pixels): value and
gradient for 4 chains 29.9 ms vmapped vs 11.2 ms with ``lax.map``. Accelerators keep ``vmap``, where
parallel lanes are what the hardware is for (not measured here: no GPU was available).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

__all__ = ["map_lanes", "vectorise_lanes", "lane_batch_size"]


def vectorise_lanes() -> bool:
    """True where lanes should be vmapped (any backend but the CPU)."""
    return jax.default_backend() != "cpu"


def map_lanes(fn: Callable, *xs):
    """``fn`` applied to the leading-axis slices of ``xs`` (pytrees of equal leading size), stacked:
    ``jax.vmap(fn)(*xs)`` on accelerators, ``jax.lax.map`` on CPU (same result)."""
    if vectorise_lanes():
        return jax.vmap(fn)(*xs)
    return jax.lax.map(lambda args: fn(*args), xs)


def lane_batch_size(accelerator: int) -> int | None:
    """``batch_size`` for ``jax.lax.map`` over many cheap evaluations: ``accelerator`` lanes at a time on
    accelerators, one at a time (None) on CPU."""
    return accelerator if vectorise_lanes() else None
