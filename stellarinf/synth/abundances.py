"""Chemical composition: Asplund et al. (2021) solar log ε scaled by [Fe/H], [α/Fe] and per-element [X/Fe]."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .constants import ATOMIC_MASS, N_ELEMENTS
from .data import solar_logeps

# The elements the α-enhanced ATLAS9 models (Castelli & Kurucz 2003, AODFNEW) raise by [α/M] = +0.4: an
# [α/Fe] label moves the same elements in the line formation, so atmosphere and lines agree.
ALPHA_ELEMENTS = (8, 10, 12, 14, 16, 18, 20, 22)  # O, Ne, Mg, Si, S, Ar, Ca, Ti


def alpha_mask(own: tuple[int, ...] = ()) -> np.ndarray:
    """(N_ELEMENTS + 1,) 1.0 for the α elements that follow [α/Fe], 0.0 elsewhere; an α element with its own
    [X/Fe] label (atomic numbers ``own``) is set by that label instead (as Korg's ``format_A_X`` does), so
    ``mg_fe`` always means [Mg/Fe] and never [Mg/Fe] − [α/Fe]."""
    out = np.zeros(N_ELEMENTS + 1)
    out[[z for z in ALPHA_ELEMENTS if z not in own]] = 1.0
    return out


def log_abundances(feh, xfe: Float[Array, "n_el1"] | None = None) -> Float[Array, "n_el1"]:
    """log ε (H = 12) indexed by Z (shape (N_ELEMENTS + 1,); index 0 unused).

    Metals (Z ≥ 3) get solar + [Fe/H] + [X/Fe]; H and He stay solar.

    Args:
        feh: [Fe/H] (dex), scalar.
        xfe: [X/Fe] per Z, shape (N_ELEMENTS + 1,), or None for all zero.
    """
    sun = jnp.asarray(solar_logeps())
    metal = jnp.asarray(np.arange(N_ELEMENTS + 1) >= 3, dtype=sun.dtype)
    out = sun + metal * feh
    if xfe is not None:
        out = out + metal * xfe
    return out


def number_fractions(logeps: Float[Array, "n_el1"]) -> Float[Array, "n_el1"]:
    """Fraction of all nuclei that belong to each element (sums to 1)."""
    eps = 10.0 ** (logeps - 12.0)
    eps = eps.at[0].set(0.0)
    return eps / jnp.sum(eps)


def mean_mass_per_nucleus(logeps: Float[Array, "n_el1"]) -> Float[Array, ""]:
    """Mean mass per nucleus in atomic mass units (about 1.27 for the Sun)."""
    masses = jnp.concatenate([jnp.zeros(1), jnp.asarray(ATOMIC_MASS)])
    return jnp.sum(number_fractions(logeps) * masses)
