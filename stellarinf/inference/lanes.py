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

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["map_lanes", "vectorise_lanes", "lane_batch_size", "stack_modules"]


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


def stack_modules(modules: Sequence[Any], like=None):
    """``(shared, batched)`` for Equinox modules of identical structure and array shapes (observation models,
    problems), else None.

    ``batched`` holds the array leaves that differ between modules, stacked on a new axis 0 (flux, σ, pixel
    weights, continuum basis, ...); leaves that are the very same object in every module (the emulator's
    weights) stay unstacked in ``shared`` with the static fields. ``eqx.combine(batched_i, shared)`` rebuilds
    module ``i`` for ``batched_i`` a slice of ``batched``.

    ``like``: an earlier ``(shared, batched)`` whose batched leaves stay batched here even where these modules share
    them, so both have one structure and one compiled program serves both (a last chunk padded with copies of one
    module shares every leaf; split as such it compiled a program of its own)."""
    arrays0, static0 = eqx.partition(modules[0], eqx.is_array)
    leaves0, treedef0 = jax.tree.flatten(arrays0)
    columns = []
    for m in modules:
        arrays, static = eqx.partition(m, eqx.is_array)
        leaves, treedef = jax.tree.flatten(arrays)
        if treedef != treedef0 or not eqx.tree_equal(static, static0):
            return None
        if any(np.shape(a) != np.shape(b) for a, b in zip(leaves, leaves0)):
            return None
        columns.append(leaves)
    forced = [False] * len(leaves0)
    if like is not None:
        forced = [b is not None for b in jax.tree.leaves(like[1], is_leaf=lambda x: x is None)]
        if len(forced) != len(leaves0):
            return None
    batched, shared = [], []
    for j, leaf0 in enumerate(leaves0):
        column = [leaves[j] for leaves in columns]
        if not forced[j] and all(c is leaf0 for c in column):
            batched.append(None)
            shared.append(leaf0)
        else:
            batched.append(jnp.stack([jnp.asarray(c) for c in column]))
            shared.append(None)
    return eqx.combine(jax.tree.unflatten(treedef0, shared), static0), jax.tree.unflatten(treedef0, batched)
