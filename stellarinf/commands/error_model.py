"""``stellarinf error-model``: fit an emulator's correlated error model on a held-out grid."""

from __future__ import annotations

import click


@click.command(name="error-model")
@click.argument("model")
@click.option(
    "--grid",
    "grid_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Held-out grid (HDF5) of the emulator's window, never trained on (e.g. the test grid).",
)
@click.option(
    "--modes",
    "n_modes",
    type=int,
    default=64,
    show_default=True,
    help="Number of correlated error modes (0 = white error only).",
)
@click.option("--max-spectra", type=int, default=None, help="Use only the first N spectra of the grid.")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the updated model here (default: update MODEL in place; a named model needs -o).",
)
@click.option(
    "--systematics",
    "n_systematics",
    type=int,
    default=0,
    show_default=True,
    help="Also measure label-space systematics on this many noiseless synthesizer stars (minutes; needs the synthesizer).",
)
@click.option("--systematics-snr", type=float, default=100.0, show_default=True, help="S/N that sets σ in those fits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the systematics stars.")
@click.option(
    "--label-directions",
    type=click.Choice(["exclude", "keep"]),
    default="exclude",
    show_default=True,
    help="exclude: project the directions in which the labels move the spectrum out of the modes (so they "
    "cannot absorb a real line-strength signal); keep: the plain principal components.",
)
@click.option(
    "--scale/--no-scale",
    default=True,
    show_default=True,
    help="--scale: also measure how the error grows and shrinks with Teff, log g and [Fe/H] (a quadratic in ln rms, "
    "stellarinf/emulators/error_scale.py) and store it; fits scale the error to their star with it, held fixed "
    "(`fit --error-scale`).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def error_model(
    model, grid_path, n_modes, max_spectra, output, n_systematics, systematics_snr, seed, label_directions, scale, quiet
):
    """Measure MODEL's error against the spectra of a held-out GRID and store it with the model.

    The per-pixel rms residual becomes the emulator's error table, and the top ``--modes`` principal
    components of the residuals its correlated error modes, which `fit` then integrates out (see
    stellarinf.emulators.error_model). Reports the fraction of held-out residual the modes capture
    (fitted on one half of the grid, measured on the other).
    """
    import datetime

    import numpy as np

    from ..emulators.error_model import explained_fraction, fit_error_modes, label_direction_basis, residual_matrix
    from ..emulators.model_io import save_emulator
    from ..emulators.registry import NAMED_MODELS, load_emulator, model_path
    from ..errors import StellarinfError
    from ..io.grid import GridFile

    if output is None and model in NAMED_MODELS:
        raise StellarinfError(f"{model!r} is a shipped model: pass -o DIR to write the updated copy somewhere else")
    emu = load_emulator(model)
    with GridFile(grid_path) as gf:
        n = len(gf) if max_spectra is None else min(max_spectra, len(gf))
    if n < 2 * max(n_modes, 1) + 2:
        raise StellarinfError(
            f"{n} held-out spectra are too few for {n_modes} modes; use a grid with ≥ {2 * n_modes + 2} spectra or fewer modes"
        )
    wl, resid = residual_matrix(emu, grid_path, np.arange(n), progress=not quiet)
    error_scale, scale_report = None, None
    if scale:
        error_scale, scale_report = _error_scale(emu, grid_path, resid)
    exclude = label_direction_basis(emu, wl) if label_directions == "exclude" and n_modes else None
    half = n // 2
    held_out = explained_fraction(fit_error_modes(resid[:half], n_modes, exclude)[0], resid[half:]) if n_modes else 0.0
    modes, rms = fit_error_modes(resid, n_modes, exclude)
    meta = emu.metadata
    meta.pop("fidelity", None)  # measured with the old error: `stellarinf fidelity` measures it again
    meta["error_model"] = {
        "grid": str(grid_path),
        "n_spectra": int(n),
        "n_modes": int(n_modes),
        "rms": float(np.sqrt(np.mean(rms**2))),
        "mae": float(np.mean(np.abs(resid))),
        "explained_fraction_held_out": round(float(held_out), 4),
        "explained_fraction_fit": round(float(np.sum(modes**2) / np.sum(rms**2)), 4) if n_modes else 0.0,
        "label_directions": label_directions,
        **({"scale": error_scale.to_json(), "scale_report": scale_report} if error_scale else {}),
        "label_directions_rank": 0 if exclude is None else int(exclude.shape[1]),
        "command": f"stellarinf error-model {model} --grid {grid_path} --modes {n_modes} --label-directions {label_directions}"
        + (f" --max-spectra {max_spectra}" if max_spectra else "")
        + ("" if scale else " --no-scale"),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    out = model_path(model) if output is None else output
    updated = emu.with_error_model(wl, rms, modes).with_metadata(meta)
    click.echo(
        f"{n} held-out spectra: rms residual {meta['error_model']['rms']:.3g}, MAE {meta['error_model']['mae']:.3g}; "
        f"{n_modes} modes capture {held_out:.1%} of the residual of unseen spectra (fitted on half, tested on the other half)"
    )
    if scale_report:
        click.echo(
            f"error scale over Teff, log g, [Fe/H]: {scale_report['scale_min']:.3g}–{scale_report['scale_max']:.3g}× "
            f"the table; explains {scale_report['ln_rms_variance_explained_held_out']:.0%} of the variance of ln rms "
            "of unseen spectra (fitted on half, tested on the other half)"
        )
    if n_systematics > 0:
        from ..validation.setups import synthesizer_truth
        from ..validation.systematics import measure_label_systematics

        resolution = float(emu.resolution) if emu.resolution else 28000.0
        truth_model, wavelength = synthesizer_truth(updated, resolution)
        res = measure_label_systematics(
            updated,
            truth_model,
            wavelength,
            resolution,
            n_stars=n_systematics,
            snr=systematics_snr,
            seed=seed,
            progress=not quiet,
        )
        meta["label_systematics"] = {
            **res.to_json(),
            "resolution": resolution,
            "seed": seed,
            "command_options": f"--systematics {n_systematics} --systematics-snr {systematics_snr:g} --seed {seed}",
        }
        updated = updated.with_metadata(meta)
        click.echo(
            "label-space systematics (rms MAP − truth, noiseless synthesizer stars): "
            + ", ".join(f"{k} {v:.3g}" for k, v in res.rms.items())
        )
    else:
        meta.pop("label_systematics", None)  # a new error model invalidates old systematics
        updated = updated.with_metadata(meta)
    save_emulator(out, updated)
    click.echo(f"error model written to {out}")


def _error_scale(emu, grid_path, resid):
    """``(scale, report)``: the error scale fitted to the held-out spectra's rms residuals (its held-out skill
    measured on the grid's second half with a fit on the first)."""
    import numpy as np

    from ..emulators.error_scale import fit_error_scale, scale_labels
    from ..io.grid import GridFile

    names = scale_labels(emu.label_space)
    if not names:  # nothing to measure it along
        return None, None
    with GridFile(grid_path) as gf:
        grid_names = gf.label_space.names
        values = np.asarray(gf.labels[: resid.shape[0]], dtype=np.float64)[:, [grid_names.index(n) for n in names]]
    space = emu.label_space
    idx = [space.names.index(n) for n in names]
    lower, upper = [float(space.lower[i]) for i in idx], [float(space.upper[i]) for i in idx]
    rms = np.sqrt(np.mean(resid**2, axis=1))
    half = rms.size // 2
    first, _ = fit_error_scale(values[:half], rms[:half], names, lower, upper)
    y = np.log(np.maximum(rms[half:], 1e-8))
    pred = np.log(np.asarray(first(values[half:])))
    held_out = 1.0 - np.var(y - pred) / np.var(y)
    scale, report = fit_error_scale(values, rms, names, lower, upper)
    report["ln_rms_variance_explained_held_out"] = round(float(held_out), 4)
    return scale, report
