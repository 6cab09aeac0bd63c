"""Top level of the synthesizer: labels → normalised flux and continuum on a fine wavelength grid.

Two fidelities share one interface:

- ``"realistic"``: interpolated ATLAS9 atmosphere (in Teff, log g, [Fe/H] and [α/Fe]), Saha–Boltzmann chemistry, H⁻/H I/scattering
  continuum, every significant line of the list with Voigt profiles, hydrogen lines, and an LTE
  formal solution with μ-quadrature; normalised by the continuum-only solution.
- ``"simple"``: see :mod:`stellarinf.synth.grey`.

:func:`make_synthesizer` builds (once per wavelength grid, fidelity and label set) a pure JAX
function ``labels[n_labels] → (flux[n_wl], continuum[n_wl])`` that can be ``jit``-ed, ``vmap``-ed
and differentiated; :func:`synthesize` is the validated, user-facing call.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, WavelengthError
from ..labels import DEFAULT_STELLAR_BOUNDS, atomic_number, element_of
from ..physics_options import DEFAULT_MOLECULES
from ..wavelength import SPEED_OF_LIGHT_KMS, as_angstrom
from .abundances import alpha_mask, log_abundances, mean_mass_per_nucleus
from .atmosphere import alpha_range, check_coverage, interpolate_atmosphere
from .chemistry import populations
from .constants import AMU, N_ELEMENTS
from .continuum import continuum_opacity
from .data import (
    DEFAULT_DAMPING,
    DEFAULT_LOGGF,
    MOLECULAR_TABLE,
    TIO_TABLE,
    check_damping,
    check_loggf,
    check_molecules,
    linelist,
)
from .errors import LineListCoverageError
from .hydrogen import hydrogen_line_opacity, lines_near
from .lines import (
    LineData,
    block_groups,
    block_points,
    build_points,
    concat_lines,
    line_data,
    line_opacity,
    line_params,
    molecular_line_data,
)
from .selection import (
    Tier,
    line_half_widths,
    select_empirical_lines,
    select_lines,
    select_molecular_lines,
    selection_tier,
)
from .settings import DEFAULT_FINE_RESOLUTION, DEFAULT_SETTINGS, SynthSettings
from .transfer import emergent_flux, optical_depth, planck

FIDELITIES = ("realistic", "simple")
# the molecular line tables of each ``molecules`` choice (physics_options.MOLECULES_CHOICES)
MOLECULE_TABLES = {"on": (MOLECULAR_TABLE,), "on+tio": (MOLECULAR_TABLE, TIO_TABLE)}
R_FINE = DEFAULT_FINE_RESOLUTION
STELLAR = ("teff", "logg", "feh", "vmic")
ALPHA = "alpha_fe"  # [α/Fe]: the atmosphere's [α/M] and the α elements without their own label (abundances.py)
DEFAULT_VMIC = 1.0
CONTINUUM_STEP = 2.0  # Å between continuum-transfer points (the continuum is smooth)
# Fine pixels per block: line opacity and transfer run one block at a time (lax.map), so the (depth × pixel)
# arrays stay in the CPU cache instead of streaming whole-window arrays through memory: the same arithmetic
# in the same order, 2-4× faster on a 2-core CPU (benchmarks/synth_speed.py).
BLOCK = 512


def fine_grid(wmin: float, wmax: float, resolving_power: float = R_FINE) -> np.ndarray:
    """Log-uniform vacuum wavelength grid (Å) with step 1/R in ln λ (about 1 km/s at R = 300,000)."""
    n = int(np.ceil(np.log(wmax / wmin) * resolving_power)) + 1
    return wmin * np.exp(np.arange(n) / resolving_power)


def check_label_names(names: Sequence[str]) -> None:
    """Labels must be teff, logg, feh, optional vmic and alpha_fe, and [X/Fe] labels (x_fe)."""
    for req in ("teff", "logg", "feh"):
        if req not in names:
            raise LabelError(
                f"the synthesizer needs label {req!r}; give teff, logg and feh (vmic, alpha_fe and <el>_fe optional)"
            )
    for n in names:
        if n not in STELLAR and n != ALPHA and element_of(n) is None:
            raise LabelError(
                f"the synthesizer does not know label {n!r}; use teff, logg, feh, vmic, alpha_fe or <element>_fe "
                "(e.g. ca_fe)"
            )


def check_wavelength(wavelength: np.ndarray) -> None:
    """The fine grid must be finite, increasing, fine enough, and inside the line list's coverage."""
    if (
        wavelength.ndim != 1
        or wavelength.size < 2
        or not np.all(np.isfinite(wavelength))
        or not np.all(np.diff(wavelength) > 0)
    ):
        raise WavelengthError("the fine wavelength grid must be a 1-D strictly increasing array of finite vacuum Å")
    step = float(np.max(np.diff(np.log(wavelength)))) * SPEED_OF_LIGHT_KMS
    if step > 1.5:
        raise WavelengthError(
            f"the fine wavelength grid is too coarse ({step:.2f} km/s per pixel) to resolve unbroadened lines; "
            "use stellarinf.synth.fine_grid(wmin, wmax) (1 km/s) or a step below 1.5 km/s"
        )
    cover = linelist().coverage
    lo, hi = float(wavelength[0]), float(wavelength[-1])
    if not any(a <= lo and hi <= b for a, b in cover):
        ranges = ", ".join(f"{a:.0f}–{b:.0f}" for a, b in cover)
        raise LineListCoverageError(
            f"the wavelength range {lo:.1f}–{hi:.1f} Å (vacuum) is outside the line list's coverage ({ranges} Å); "
            "choose a window inside it (e.g. --window galah-red or gaia-rvs)"
        )


def validate_labels(values: np.ndarray, names: Sequence[str], fidelity: str) -> np.ndarray:
    """Eager checks: finite values, vmic ≥ 0, |[X/Fe]| ≤ 2, [α/Fe] inside the atmospheres' range (both
    fidelities, so a grid's box means the same in each), atmosphere coverage (realistic)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[-1] != len(names):
        raise LabelError(f"got {arr.shape[-1]} label values for {len(names)} names {list(names)}")
    flat = arr.reshape(-1, len(names))
    for j, n in enumerate(names):
        col = flat[:, j]
        if not np.all(np.isfinite(col)):
            raise LabelError(f"label {n!r} has NaN or infinite values; give finite numbers")
        if n == "vmic" and np.any((col < 0) | (col > 5)):
            raise LabelError(
                f"vmic={col[(col < 0) | (col > 5)][0]:g} km/s is outside 0–5 km/s (line windows assume ≤ 5)"
            )
        if element_of(n) is not None and np.any(np.abs(col) > 2.0):
            raise LabelError(f"{n}={col[np.abs(col) > 2][0]:g} dex is outside −2..+2; give a plausible [X/Fe]")
    t, g, f = (flat[:, names.index(k)] for k in ("teff", "logg", "feh"))
    a = flat[:, names.index(ALPHA)] if ALPHA in names else np.zeros_like(t)
    lo, hi = alpha_range()
    if np.any((a < lo - 1e-9) | (a > hi + 1e-9)):
        raise LabelError(
            f"alpha_fe={a[(a < lo - 1e-9) | (a > hi + 1e-9)][0]:g} dex is outside {lo:g}..{hi:g}, the [α/M] range of "
            "the ATLAS9 atmospheres (their 0 and +0.4 planes, extrapolated 0.2 dex beyond); choose a value inside it"
        )
    if fidelity == "realistic":
        check_coverage(t, g, f, a)
    else:
        lo = {"teff": 3000.0, "logg": -0.5, "feh": -4.0}
        hi = {"teff": 10000.0, "logg": 5.5, "feh": 1.0}
        for k, col in (("teff", t), ("logg", g), ("feh", f)):
            if np.any((col < lo[k]) | (col > hi[k])):
                raise LabelError(
                    f"{k}={col[(col < lo[k]) | (col > hi[k])][0]:g} is outside the simple model's range {lo[k]:g}..{hi[k]:g}"
                )
    return arr


def _unpack(labels, names: tuple[str, ...]):
    """Label vector → (teff, logg, feh, vmic, alpha, xfe[n_el1]) inside JAX; ``xfe`` holds [X/Fe] per Z, the
    α elements without their own label at [α/Fe] (:func:`.abundances.alpha_mask`)."""
    get = {n: labels[i] for i, n in enumerate(names)}
    own = tuple(atomic_number(element_of(n)) for n in names if element_of(n) is not None)
    alpha = get.get(ALPHA, 0.0)
    xfe = alpha * jnp.asarray(alpha_mask(own)) if ALPHA in get else jnp.zeros(N_ELEMENTS + 1)
    for n in names:
        el = element_of(n)
        if el is not None:
            xfe = xfe.at[atomic_number(el)].set(get[n])
    vmic = get.get("vmic", DEFAULT_VMIC)
    return get["teff"], get["logg"], get["feh"], vmic, alpha, xfe


class _Interp:
    """Static linear interpolation from a coarse to a fine wavelength grid."""

    def __init__(self, coarse: np.ndarray, fine: np.ndarray):
        i = np.clip(np.searchsorted(coarse, fine, side="right") - 1, 0, len(coarse) - 2)
        self.i = i
        self.w = (fine - coarse[i]) / (coarse[i + 1] - coarse[i])

    def __call__(self, y):
        return y[..., self.i] * (1.0 - self.w) + y[..., self.i + 1] * self.w


def line_synthesizer(
    wavelength: np.ndarray,
    names: tuple[str, ...],
    loggf: str = DEFAULT_LOGGF,
    damping: str = DEFAULT_DAMPING,
    settings: SynthSettings = DEFAULT_SETTINGS,
    molecules: str = DEFAULT_MOLECULES,
    extra_lines: LineData | None = None,
    teff_min: float | None = None,
    feh_max: float | None = None,
    logg_max: float | None = None,
) -> tuple[Callable, LineData]:
    """The realistic synthesizer with the lines' log gf as an input (for the solar calibration).

    Returns ``(fn, lines)``: ``fn(labels, log_gf) -> (flux, continuum)`` where ``log_gf`` (n_lines,) are
    the log gf of ``lines``: the rows of the line list selected for this grid, then (``loggf="solar"``) the
    calibration's empirical lines in range, then ``extra_lines``; ``lines.log_gf`` holds the ``loggf`` choice's
    values. Pure JAX and differentiable in both arguments. ``settings``: angles, depths and Voigt terms
    (:mod:`.settings`). ``molecules="on"``: molecular equilibrium and the molecular lines (their log gf are
    fixed, not an input); ``"on+tio"``: and Ti/TiO in the equilibrium with the TiO lines. ``teff_min``, ``feh_max``, ``logg_max``: line windows sized only for stars at least that
    hot and at most that metal-rich and dense (narrower; see :func:`~stellarinf.synth.selection.selection_tier`), so
    other labels are not synthesised accurately.
    """
    depth_index = np.asarray(settings.depth_index)
    wl_lo, wl_hi = float(wavelength[0]), float(wavelength[-1])
    rng = (round(wl_lo, 3), round(wl_hi, 3))
    tier = dict(teff_min=teff_min, feh_max=feh_max, logg_max=logg_max, edge_tolerance=settings.edge_tolerance)
    idx, half_width = select_lines(*rng, damping=damping, **tier)
    lines = line_data(idx, loggf, damping)
    more = [select_empirical_lines(*rng, damping)] if loggf == "solar" else []
    if extra_lines is not None:
        more.append((extra_lines, line_half_widths(extra_lines)))
    for add, add_half_width in more:
        lines = concat_lines(lines, add)
        half_width = np.concatenate([half_width, add_half_width])
    check_molecules(molecules)  # "on+tio" without its table (a damaged checkout): the error that says how to restore it
    all_lines, mol_gf = lines, np.zeros(0)
    for table in MOLECULE_TABLES.get(molecules, ()):
        m_idx, m_half_width = select_molecular_lines(*rng, **tier, table=table)
        m_lines = molecular_line_data(m_idx, table)
        all_lines, mol_gf = concat_lines(all_lines, m_lines), np.concatenate([mol_gf, m_lines.log_gf])
        half_width = np.concatenate([half_width, m_half_width])
    with_molecules = molecules in MOLECULE_TABLES
    h_lines = lines_near(wl_lo, wl_hi)
    n_c = max(int(np.ceil((wl_hi - wl_lo) / CONTINUUM_STEP)) + 1, 2)
    coarse = np.linspace(wl_lo, wl_hi, n_c)
    to_fine = _Interp(coarse, wavelength)
    wl_c = jnp.asarray(coarse)
    # the blocks: fine pixel indices (n_blocks, BLOCK), the last block padded with the last pixel (dropped after)
    n_wl = wavelength.size
    n_blocks = -(-n_wl // BLOCK)
    pix = np.minimum(np.arange(n_blocks * BLOCK), n_wl - 1).reshape(n_blocks, BLOCK)
    points = build_points(wavelength, all_lines, half_width)
    # blocks of very different line density (a molecular band head) go to separate lax.maps (lines.block_groups)
    groups = block_groups(points, n_blocks, BLOCK)
    group_inputs = [
        (
            jnp.asarray(to_fine.i[pix[g]]),
            jnp.asarray(to_fine.w[pix[g]]),
            block_points(points, n_blocks, BLOCK, g),
            jnp.asarray(pix[g]),
        )
        for g in groups
    ]
    block_order = np.argsort(np.concatenate(groups))

    def fn(labels: Float[Array, "n_labels"], log_gf: Float[Array, "n_lines"]):
        teff, logg, feh, vmic, alpha, xfe = _unpack(labels, names)
        atm = interpolate_atmosphere(teff, logg, feh, alpha, depth_index)
        logeps = log_abundances(feh, xfe)
        T, ne = atm.temperature, atm.electron_density
        pops = populations(T, atm.gas_pressure, ne, logeps, molecules)
        rho = pops.n_nuclei * mean_mass_per_nucleus(logeps) * AMU
        a_c, s_c = continuum_opacity(wl_c, T, ne, pops)
        alpha_c = a_c + s_c
        planck_c = planck(wl_c, T)
        cont_c = emergent_flux(optical_depth(alpha_c, rho, atm.rhox), planck_c, settings.n_mu)
        if with_molecules:
            log_gf = jnp.concatenate([jnp.asarray(log_gf), jnp.asarray(mol_gf)])
        params = line_params(all_lines, T, ne, pops, vmic, log_gf)
        # hydrogen on the whole grid at once (its core formula runs only near the line centre: hydrogen.py)
        h_alpha = None
        for h in h_lines:
            a_h = hydrogen_line_opacity(h, wavelength, T, ne, pops.n_hi, pops.log_u[1, 0], vmic)
            h_alpha = a_h if h_alpha is None else h_alpha + a_h

        def block(x):
            i_b, w_b, points_b, pix_b = x

            def to_block(y):  # the continuum's coarse grid → this block's fine pixels (as _Interp)
                return y[..., i_b] * (1.0 - w_b) + y[..., i_b + 1] * w_b

            alpha = to_block(alpha_c)
            alpha = alpha + line_opacity(points_b, params, BLOCK, settings.voigt_terms)
            if h_alpha is not None:
                alpha = alpha + h_alpha[:, pix_b]
            return emergent_flux(optical_depth(alpha, rho, atm.rhox), to_block(planck_c), settings.n_mu)

        parts = [jax.lax.map(block, x) for x in group_inputs]
        flux = (parts[0] if len(parts) == 1 else jnp.concatenate(parts)[block_order]).reshape(-1)[:n_wl]
        continuum = to_fine(cont_c)
        return flux / continuum, continuum

    return fn, lines


def _realistic(
    wavelength: np.ndarray,
    names: tuple[str, ...],
    loggf: str = DEFAULT_LOGGF,
    damping: str = DEFAULT_DAMPING,
    settings: SynthSettings = DEFAULT_SETTINGS,
    molecules: str = DEFAULT_MOLECULES,
    tier: Tier = Tier(),
) -> Callable:
    fn, lines = line_synthesizer(wavelength, names, loggf, damping, settings, molecules, **tier._asdict())
    log_gf = np.asarray(lines.log_gf)
    return lambda labels: fn(labels, log_gf)


@functools.lru_cache(maxsize=128)  # a grid in tier batches holds one per tier (up to 36 per window)
def _cached(
    key,
    names: tuple[str, ...],
    fidelity: str,
    wl_bytes: bytes,
    loggf: str = DEFAULT_LOGGF,
    damping=DEFAULT_DAMPING,
    settings: SynthSettings = DEFAULT_SETTINGS,
    molecules: str = DEFAULT_MOLECULES,
    tier: Tier = Tier(),
):
    wavelength = np.frombuffer(wl_bytes, dtype=np.float64)
    if fidelity == "realistic":
        fn = _realistic(wavelength, names, loggf, damping, settings, molecules, tier)
    else:
        from .grey import simple_synthesizer

        fn = simple_synthesizer(wavelength, names)
    return fn


def make_synthesizer(
    wavelength_fine,
    label_names: Sequence[str] = STELLAR,
    fidelity: str = "realistic",
    loggf: str = DEFAULT_LOGGF,
    damping: str = DEFAULT_DAMPING,
    settings: SynthSettings = DEFAULT_SETTINGS,
    molecules: str = DEFAULT_MOLECULES,
    teff_min: float | None = None,
    feh_max: float | None = None,
    logg_max: float | None = None,
) -> Callable:
    """Pure JAX ``labels[n_labels] → (flux[n_wl], continuum[n_wl])`` (not jitted; wrap in ``jax.jit``/``vmap``).

    Args:
        wavelength_fine: (n_wl,) vacuum Å, strictly increasing, ≤ 1.5 km/s per pixel.
        label_names: order of the label vector: teff, logg, feh, optional vmic (default
            1 km/s), optional ``alpha_fe`` ([α/Fe], default 0: the atmosphere's [α/M] and the abundances of
            O, Ne, Mg, Si, S, Ar, Ca, Ti unless they have their own label) and ``<el>_fe`` labels.
        fidelity: "realistic" or "simple".
        loggf: "solar" (log gf calibrated on the observed Sun, the default) or "laboratory" (realistic
            fidelity only; the simple fidelity keeps its own schematic lines).
        damping: "unsold" (Unsöld × 2 for every line, the default: what the shipped emulators learned) or
            "abo" (ABO cross-sections and tabulated widths from the Gaia-ESO list where available).
        settings: numerical settings of the realistic fidelity (:class:`~stellarinf.synth.settings.SynthSettings`;
            the default is what the shipped grids and emulators were made with).
        molecules: "off" (atoms only, the default: what all shipped emulators but the blue arm's learned), "on" (molecular
            equilibrium of H, C, N, O, Mg and the CH, MgH, C2, CN lines; realistic fidelity only) or "on+tio" (and Ti
            with TiO and its lines of ``data/linelist_tio.h5``).

        teff_min, feh_max, logg_max: serve only stars at least this hot, at most this metal-rich and at most this log g
            (realistic fidelity): the lines' windows are sized in the reference atmospheres of that tier
            (:func:`~stellarinf.synth.selection.selection_tier`), which is cheaper; other labels are not synthesised
            accurately (``stellarinf grid`` groups its batches by tier, each using the tier of its coolest, most
            metal-rich and densest star).

    ``flux`` is normalised by the continuum-only solution; ``continuum`` is the astrophysical surface
    flux F_λ (erg s⁻¹ cm⁻² Å⁻¹). No validation inside: check labels with :func:`validate_labels`.
    """
    from .. import enable_float64

    enable_float64()  # atmospheres need float64
    if fidelity not in FIDELITIES:
        raise LabelError(f"unknown fidelity {fidelity!r}; choose 'realistic' or 'simple'")
    names = tuple(label_names)
    check_label_names(names)
    wl = np.ascontiguousarray(as_angstrom(wavelength_fine), dtype=np.float64)
    check_wavelength(wl)
    return _cached(
        (wl.size, float(wl[0]), float(wl[-1])),
        names,
        fidelity,
        wl.tobytes(),
        check_loggf(loggf),
        check_damping(damping),
        settings,
        check_molecules(molecules),
        selection_tier(teff_min, feh_max, logg_max) if fidelity == "realistic" else Tier(),
    )


@functools.lru_cache(maxsize=16)
def _jitted(fn):
    return jax.jit(jax.vmap(fn))


def synthesize(
    labels,
    wavelength_fine,
    fidelity: str = "realistic",
    *,
    label_names: Sequence[str] | None = None,
    loggf: str = DEFAULT_LOGGF,
    damping: str = DEFAULT_DAMPING,
    settings: SynthSettings = DEFAULT_SETTINGS,
    molecules: str = DEFAULT_MOLECULES,
):
    """Normalised flux and continuum on an unbroadened fine grid (validated).

    Args:
        labels: mapping ``{"teff": 5772, "logg": 4.44, "feh": 0.0, "vmic": 1.0, "ca_fe": 0.1}``, or an
            array (n_labels,) / (n_spectra, n_labels) ordered as ``label_names``
            (default teff, logg, feh, vmic).
        wavelength_fine: (n_wl,) vacuum Å, e.g. :func:`fine_grid`.
        fidelity: "realistic" (default) or "simple".
        loggf: "solar" (default: log gf calibrated on the observed Sun) or "laboratory".
        damping: "unsold" (default) or "abo" (see :func:`make_synthesizer`).
        settings: numerical settings (see :func:`make_synthesizer`).
        molecules: "off" (default), "on" or "on+tio" (see :func:`make_synthesizer`).

    Returns:
        (flux, continuum), each (n_wl,) or (n_spectra, n_wl) numpy float64 arrays.
    """
    from .. import enable_float64

    enable_float64()  # atmospheres need float64
    if isinstance(labels, Mapping):
        names = tuple(labels)
        values = np.array([float(labels[n]) for n in names], dtype=np.float64)
    else:
        names = tuple(label_names or STELLAR)
        values = np.asarray(labels, dtype=np.float64)
    if fidelity not in FIDELITIES:
        raise LabelError(f"unknown fidelity {fidelity!r}; choose 'realistic' or 'simple'")
    check_label_names(names)
    values = validate_labels(values, names, fidelity)  # cheap checks before the (slow) setup
    fn = make_synthesizer(wavelength_fine, names, fidelity, loggf, damping, settings, molecules)
    batch = values.reshape(-1, len(names))
    flux, cont = _jitted(fn)(jnp.asarray(batch))
    flux, cont = np.asarray(flux), np.asarray(cont)
    if values.ndim == 1:
        return flux[0], cont[0]
    return flux, cont


DEFAULT_BOX = dict(DEFAULT_STELLAR_BOUNDS)
