"""``stellarinf grid``: a grid of synthetic spectra (resumable HDF5, batched with jax.vmap)."""

from __future__ import annotations

import datetime
import functools
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import click

from ..errors import LabelError
from ..physics_options import (
    DAMPING_CHOICES,
    DEFAULT_DAMPING,
    DEFAULT_LOGGF,
    DEFAULT_MOLECULES,
    LOGGF_CHOICES,
    MOLECULES_CHOICES,
)
from ..synth.settings import DEFAULT_PRESET, PRESETS

LINE_SELECTIONS = ("batch", "box")
GRID_THREADS = 2  # batches computed at once (JAX releases the GIL while a compiled batch runs)
_HELP_BOX = "Override a label range, e.g. --label-box teff=4500:6500 (repeatable)."


def parse_label_box(items, elements, alpha: bool = False):
    """Default box for the stellar labels (+ [α/Fe] with ``alpha``) + [X/Fe] of ``elements``, with NAME=LO:HI
    overrides."""
    from ..labels import LabelSpace, default_label_space

    bounds = {lab.name: (lab.lower, lab.upper) for lab in default_label_space(elements, alpha).labels}
    for item in items:
        try:
            name, rng = item.split("=", 1)
            lo, hi = (float(x) for x in rng.split(":"))
        except ValueError:
            raise LabelError(f"--label-box {item!r}: use NAME=LOW:HIGH, e.g. teff=4500:6500") from None
        name = name.strip()
        if name not in bounds:
            raise LabelError(
                f"--label-box {name!r} is not a label of this grid ({', '.join(bounds)}); add elements with "
                "--elements, [α/Fe] with --alpha"
            )
        bounds[name] = (lo, hi)
    return LabelSpace.from_bounds(bounds)


def generate_grid(
    output,
    *,
    window="galah-red",
    n=1000,
    design="sobol",
    seed=0,
    fidelity="realistic",
    batch_size=16,
    elements=None,
    alpha=False,
    label_box=(),
    loggf=DEFAULT_LOGGF,
    damping=DEFAULT_DAMPING,
    settings=None,
    molecules=DEFAULT_MOLECULES,
    line_selection="batch",
    oversample=1,
    progress=True,
):
    """Make (or resume, or extend) a grid file; returns the output path. See the ``grid`` command.

    ``loggf``: "solar" (astrophysical log gf fitted to the observed Sun, the default) or "laboratory".
    ``damping``: "unsold" (Unsöld × 2) or "abo" (tabulated ABO widths; see ``make_synthesizer``).
    ``settings``: the realistic synthesizer's numerical preset ("extended", the default; "standard", "reference":
    :mod:`stellarinf.synth.settings`).
    ``molecules``: "off" (atoms only) or "on" (molecular equilibrium and the CH, MgH, C2, CN lines).
    ``alpha``: [α/Fe] is a label (α-enhanced ATLAS9 atmospheres and α-element abundances move with it).
    ``line_selection``: "batch" (the default: rows are computed in batches of similar Teff, [Fe/H] and log g, each with
    the box's lines in windows sized for stars at least as hot as its coolest, at most as metal-rich as its most
    metal-rich and at most as dense as its highest-log g star, :func:`~stellarinf.synth.selection.selection_tier`) or
    "box" (windows sized for the whole label box). Realistic fidelity only.
    ``oversample``: K samples per instrument pixel (1: the instrument's pixels; 2: also every half-pixel point, what an
    emulator needs to learn the flux between pixels: :func:`~stellarinf.wavelength.log_uniform_grid`).
    """
    import jax.numpy as jnp
    import numpy as np
    from tqdm import tqdm

    import stellarinf

    from ..design import sample_labels
    from ..io.grid import GridWriter
    from ..labels import DEFAULT_ABUNDANCE_ELEMENTS
    from ..synth.data import TIO_TABLE, linelist, molecular_linelist
    from ..synth.hydrogen import CENTROIDS
    from ..synth.observed import padded_fine_grid, resolve_window
    from ..synth.selection import calibration_fingerprint, selection_tier, tier_scheme, window_scheme
    from ..synth.settings import DEFAULT_PRESET, fine_resolution, preset_name, settings_preset
    from ..synth.synthesize import make_synthesizer, validate_labels

    if line_selection not in LINE_SELECTIONS:
        raise ValueError(f"line_selection={line_selection!r} is not known; choose one of {', '.join(LINE_SELECTIONS)}")

    elements = tuple(DEFAULT_ABUNDANCE_ELEMENTS if elements is None else elements)
    space = parse_label_box(label_box, elements, alpha)
    win = resolve_window(window)
    wavelength = win.grid(oversample)
    settings = preset_name(settings or DEFAULT_PRESET)
    synth_settings = settings_preset(settings)
    r_fine = fine_resolution(settings)
    fine = padded_fine_grid(win.wmin, win.wmax, resolution=win.resolution, fine_resolution=r_fine)
    planned = sample_labels(space, int(n), design, int(seed))
    validate_labels(planned, list(space.names), fidelity)  # every point inside the atmosphere grid
    metadata = {
        "generator": "stellarinf.synth",
        "fidelity": fidelity,
        "version": stellarinf.__version__,
        "seed": int(seed),
        "design": design,
        "window": win.name,
        "wmin": win.wmin,
        "wmax": win.wmax,
        "resolution": win.resolution,
        "pixels_per_resolution": win.pixels_per_resolution,
        "oversample": int(oversample),  # samples per instrument pixel (older files: 1)
        "fine_resolution": r_fine,
        "vsini": 0.0,
        "vmacro": 0.0,
        "medium": "vacuum",
        "line_list": linelist().source,
        "loggf": loggf if fidelity == "realistic" else "schematic",
        "damping": damping if fidelity == "realistic" else "schematic",
        "atmospheres": (
            ("ATLAS9 ODFNEW + AODFNEW, [α/M] interpolated" if alpha else "ATLAS9 ODFNEW") + " (Castelli & Kurucz 2003)"
            if fidelity == "realistic"
            else "grey Eddington"
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if fidelity == "realistic":  # (schematic grids have neither: an old one resumes without a mismatch)
        metadata.update(
            synth_settings=settings, hydrogen=CENTROIDS, line_selection=line_selection, line_windows=window_scheme()
        )
        if line_selection == "batch":  # the tier edges decide each batch's lines
            metadata.update(line_tiers=tier_scheme(molecules))
        if loggf == "solar":  # which calibration of this window's lines (older files recorded none)
            metadata.update(loggf_calibration=calibration_fingerprint(float(fine[0]), float(fine[-1]), damping))
        if molecules != "off":  # (an atoms-only grid records nothing: older grids resume without a mismatch)
            metadata.update(molecules=molecules, molecular_line_list=molecular_linelist().source)
        if molecules == "on+tio":
            metadata.update(tio_line_list=molecular_linelist(TIO_TABLE).source + "; 48TiO derived (data/README.md)")
    writer = GridWriter(output, space, wavelength, planned, metadata, with_continuum=True, batch_size=batch_size)
    teff, feh, logg = (planned[:, list(space.names).index(k)] for k in ("teff", "feh", "logg"))
    by_tier = fidelity == "realistic" and line_selection == "batch"
    pending = writer.pending_rows(tier_order(teff, feh, logg) if by_tier else None)

    def observer(tier):
        fn = make_synthesizer(fine, space.names, fidelity, loggf, damping, synth_settings, molecules, **tier._asdict())
        return _batched_observer(fn, fine.tobytes(), wavelength.tobytes(), win.resolution)

    def compute(rows):
        labels = planned[rows]
        tier = selection_tier(teff[rows].min(), feh[rows].max(), logg[rows].max()) if by_tier else selection_tier()
        batched = observer(tier)
        if labels.shape[0] < batch_size:  # pad so the jitted shape never changes
            labels = np.concatenate([labels, np.repeat(labels[-1:], batch_size - labels.shape[0], axis=0)])
        return rows, np.asarray(batched(jnp.asarray(labels)))[: rows.size]

    with (
        tqdm(
            total=len(planned),
            initial=len(planned) - sum(rows.size for rows in pending),
            unit="spec",
            desc=f"grid {fidelity} {win.name}",
            disable=not progress,
        ) as bar,
        ThreadPoolExecutor(GRID_THREADS) as pool,
    ):
        # GRID_THREADS batches in flight: one batch alone leaves much of a second core idle (four GALAH arms on this
        # 2-core CPU: 1.94 spectra/s with one, 2.27 with two); parts are still written in order, one at a time
        in_flight: deque = deque()

        def write_oldest():
            rows, out = in_flight.popleft().result()
            writer.write_rows(rows, out[:, 0], out[:, 1])
            bar.update(rows.size)

        try:
            for part in pending:
                in_flight.append(pool.submit(compute, part))
                if len(in_flight) >= GRID_THREADS:
                    write_oldest()
            while in_flight:
                write_oldest()
        except BaseException:
            for future in in_flight:  # an interruption stops after the batches already running
                future.cancel()
            raise
    return writer.finalize()


def tier_order(teff, feh, logg):
    """Rows ordered by line-selection tier (:func:`~stellarinf.synth.selection.selection_tier`: Teff tier, then
    [Fe/H] tier, then log g tier), then by Teff, so consecutive batches hold stars of one tier."""
    import numpy as np

    from ..synth.selection import selection_tier

    tiers = [selection_tier(t, f, g) for t, f, g in zip(teff, feh, logg)]
    t_key = np.array([-1.0 if t.teff_min is None else t.teff_min for t in tiers])
    f_key = np.array([9.0 if t.feh_max is None else t.feh_max for t in tiers])
    g_key = np.array([9.0 if t.logg_max is None else t.logg_max for t in tiers])
    return np.lexsort((teff, g_key, f_key, t_key))


# a grid in tier batches compiles one program per selection tier (up to 36 per window): keep them all
@functools.lru_cache(maxsize=64)
def _batched_observer(fn, fine_bytes: bytes, out_bytes: bytes, resolution: float):
    """jit(vmap(labels → broadened, resampled (flux, continuum))), cached so reruns compile once."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ..observe.broadening import broaden, interpolation_weights, velocity_step

    fine = np.frombuffer(fine_bytes, dtype=np.float64)
    idx, t = interpolation_weights(fine, np.frombuffer(out_bytes, dtype=np.float64))
    idx, t = jnp.asarray(idx), jnp.asarray(t)
    dv = velocity_step(fine)

    def observed(labels):
        flux, cont = fn(labels)
        both = broaden(jnp.stack([flux, cont]), dv, resolution=resolution)
        return both[:, idx] * (1.0 - t) + both[:, idx + 1] * t

    return jax.jit(jax.vmap(observed))


@click.command(name="grid")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Grid file to write (HDF5).")
@click.option(
    "--window",
    default="galah-red",
    show_default=True,
    help="Model window (galah-blue, galah-green, galah-red, galah-ir, gaia-rvs).",
)
@click.option(
    "--n", "n", default=1000, show_default=True, type=click.IntRange(min=1), help="Number of spectra (at least 1)."
)
@click.option("--design", type=click.Choice(["sobol", "latin", "uniform"]), default="sobol", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sampling design.")
@click.option("--fidelity", type=click.Choice(["realistic", "simple"]), default="realistic", show_default=True)
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Spectra per vmap batch (and per resumable part).",
)
@click.option(
    "--elements",
    default=None,
    help="Elements with [X/Fe] labels: comma-separated symbols, or a named set (galah: the 30 elements the four "
    "GALAH arms measure; default: Li,Al,Si,Ca,Ti,Ni,Ba).",
)
@click.option(
    "--alpha",
    is_flag=True,
    help="[α/Fe] as a label (-0.2..+0.6): α-enhanced ATLAS9 atmospheres, and O, Ne, Mg, Si, S, Ar, Ca, Ti "
    "without their own --elements label follow it.",
)
@click.option("--label-box", multiple=True, help=_HELP_BOX)
@click.option(
    "--loggf",
    type=click.Choice(LOGGF_CHOICES),
    default=DEFAULT_LOGGF,
    show_default=True,
    help="Oscillator strengths: calibrated on the observed Sun (data/loggf_solar.ecsv) or linemake's laboratory values.",
)
@click.option(
    "--damping",
    type=click.Choice(DAMPING_CHOICES),
    default=DEFAULT_DAMPING,
    show_default=True,
    help="Van der Waals widths: Unsöld × 2 for every line, or ABO cross-sections from the Gaia-ESO list (data/damping.ecsv).",
)
@click.option(
    "--settings",
    type=click.Choice(list(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="Numerics of the realistic synthesizer: extended (down from log τ = −6.75, where strong-line cores form), "
    "standard (from −5, 15 % faster; as the grids up to the eighteenth session), reference (slow; for checks).",
)
@click.option(
    "--molecules",
    type=click.Choice(MOLECULES_CHOICES),
    default=DEFAULT_MOLECULES,
    show_default=True,
    help="Molecular equilibrium (H, C, N, O, Mg) and the CH, MgH, C2, CN lines (data/linelist_molecules.ecsv); "
    "off = atoms only, what the shipped red, green, IR and RVS Paynes learned (the blue arm's learned on); on+tio = "
    "and Ti with TiO and its lines (data/linelist_tio.h5; 48TiO derived from the other isotopologues).",
)
@click.option(
    "--line-selection",
    type=click.Choice(LINE_SELECTIONS),
    default="batch",
    show_default=True,
    help="How wide each batch's line windows are: batch = rows grouped by Teff, [Fe/H] and log g, each batch's windows "
    "sized for its coolest, most metal-rich, highest-log g star's tier (cheaper); box = sized for the whole box (how "
    "grids were made before; needed to resume or extend such a grid).",
)
@click.option(
    "--oversample",
    default=1,
    show_default=True,
    type=click.IntRange(1, 8),
    help="Samples per instrument pixel: 2 also stores every half-pixel point (the instrument's pixels are every "
    "second column), so an emulator can learn the flux between pixels (stellarinf train --wavelengths continuous).",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def grid(
    output,
    window,
    n,
    design,
    seed,
    fidelity,
    batch_size,
    elements,
    alpha,
    label_box,
    loggf,
    damping,
    settings,
    molecules,
    line_selection,
    oversample,
    no_progress,
):
    """Make a grid of synthetic spectra at the window's resolution (resumable: rerun to resume;
    a larger --n with the same seed and design extends an existing grid)."""
    from ..labels import parse_elements

    els = None if elements is None else parse_elements(elements)
    path = generate_grid(
        output,
        window=window,
        n=n,
        design=design,
        seed=seed,
        fidelity=fidelity,
        batch_size=batch_size,
        elements=els,
        alpha=alpha,
        label_box=label_box,
        loggf=loggf,
        damping=damping,
        settings=settings,
        molecules=molecules,
        line_selection=line_selection,
        oversample=oversample,
        progress=not no_progress,
    )
    click.echo(f"wrote {path}")
