"""LTE chemistry: Saha–Boltzmann ionisation balance with tabulated partition functions.

Stages I, II, III of every element with the NIST ionisation energies and Barklem & Collet (2016) partition
functions; H⁻ from its Saha equation (χ = 0.754 eV); with ``molecules`` the molecular equilibrium of H, C,
N, O and Mg (and Ti with ``"on+tio"``; :mod:`.molecules`) takes their atoms bound in molecules out of the atomic
stages and gives the molecules' densities. The electron density is taken from the model atmosphere.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .abundances import number_fractions
from .constants import CHI_HMINUS, K_B, K_B_EV, SAHA_CONST
from .data import ionization_energies, partition_functions


class Populations(NamedTuple):
    """Number densities (cm^-3) per depth."""

    n_nuclei: Float[Array, "n_depth"]  # all nuclei
    species: Float[Array, "n_el1 3 n_depth"]  # [Z, stage, depth], stage 0 = I
    log_u: Float[Array, "n_el1 3 n_depth"]  # ln partition function [Z, stage, depth]
    n_hminus: Float[Array, "n_depth"]
    electron_density: Float[Array, "n_depth"]
    # with molecules: number densities and ln partition functions of the set's molecules (molecules.MOLECULE_SETS)
    molecules: Float[Array, "n_mol n_depth"] | None = None
    log_u_molecules: Float[Array, "n_mol n_depth"] | None = None

    @property
    def n_hi(self):
        return self.species[1, 0]

    @property
    def n_hii(self):
        return self.species[1, 1]


def log_partition_functions(temperature: Float[Array, "n_depth"]) -> Float[Array, "n_el1 3 n_depth"]:
    """ln U(T) for every element and stages I–III, linear in log10 U between table temperatures."""
    table = partition_functions()
    tgrid = jnp.asarray(table.temperature)
    t = jnp.clip(temperature, tgrid[0], tgrid[-1])
    i = jnp.clip(jnp.searchsorted(tgrid, t, side="right") - 1, 0, tgrid.shape[0] - 2)
    w = (t - tgrid[i]) / (tgrid[i + 1] - tgrid[i])
    lu = jnp.asarray(table.log10_u)
    return jnp.log(10.0) * (lu[..., i] * (1.0 - w) + lu[..., i + 1] * w)


def ionisation_fractions(temperature, electron_density, log_u) -> Float[Array, "n_el1 3 n_depth"]:
    """Saha fractions of stages I, II, III of every element (they sum to 1 over the stage axis).

    Args:
        temperature: (n_depth,) K. electron_density: (n_depth,) cm^-3.
        log_u: (n_el1, 3, n_depth) ln partition functions.
    """
    chi = jnp.asarray(ionization_energies())[:, :2, None]  # (n_el1, 2, 1) eV
    ln_phi = (
        jnp.log(2.0 * SAHA_CONST)
        + 1.5 * jnp.log(temperature)
        - jnp.log(electron_density)
        + log_u[:, 1:]
        - log_u[:, :2]
        - chi / (K_B_EV * temperature)
    )  # (n_el1, 2, n_depth)
    ln_rel = jnp.stack([jnp.zeros_like(ln_phi[:, 0]), ln_phi[:, 0], ln_phi[:, 0] + ln_phi[:, 1]], axis=1)
    return jnp.exp(ln_rel - jax.scipy.special.logsumexp(ln_rel, axis=1, keepdims=True))


def populations(temperature, gas_pressure, electron_density, logeps, molecules: bool | str = False) -> Populations:
    """Number densities of every element's stages I–III and of H⁻ in each layer (and of molecules).

    Args:
        temperature, gas_pressure, electron_density: (n_depth,) in K, dyn cm^-2, cm^-3.
        logeps: (n_el1,) log ε abundances (H = 12).
        molecules: solve the molecular equilibrium (:func:`.molecules.solve_equilibrium`): ``True`` or ``"on"`` (H,
            C, N, O, Mg), ``"on+tio"`` (and Ti, TiO); ``False``/``"off"``: none.
    """
    from .molecules import MOLECULE_SETS, molecule_set, solve_equilibrium

    choice = molecule_set(molecules)
    n_nuclei = gas_pressure / (K_B * temperature) - electron_density
    log_u = log_partition_functions(temperature)
    frac = ionisation_fractions(temperature, electron_density, log_u)
    species = number_fractions(logeps)[:, None, None] * n_nuclei[None, None, :] * frac
    mol = log_u_mol = None
    if choice is not None:
        el = jnp.asarray(MOLECULE_SETS[choice][0])
        log_total = jnp.log(number_fractions(logeps)[el])[:, None] + jnp.log(n_nuclei)[None, :]
        log_neutral_fraction = jnp.log(frac[el, 0])
        eq = solve_equilibrium(temperature, log_total, log_neutral_fraction, log_u[el, 0], choice)
        # the free atoms keep their Saha ratios between stages; their number drops to what molecules leave
        free = jnp.exp(eq.log_n_neutral - log_total - log_neutral_fraction)  # (n_el, n_depth), ≤ 1
        species = species * jnp.ones(species.shape[::2]).at[el].set(free)[:, None, :]
        mol, log_u_mol = jnp.exp(eq.log_n_molecules), eq.log_u_molecules
    # H⁻: n(H⁻) / (n(H I) n_e) = U(H⁻) / (2 U(H I)) (h²/2πmkT)^{3/2} e^{χ/kT}, U(H⁻) = 1.
    n_hminus = (
        species[1, 0]
        * electron_density
        * jnp.exp(CHI_HMINUS / (K_B_EV * temperature) - log_u[1, 0])
        / (2.0 * SAHA_CONST * temperature**1.5)
    )
    return Populations(n_nuclei, species, log_u, n_hminus, electron_density, mol, log_u_mol)
