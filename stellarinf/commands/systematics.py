"""``stellarinf systematics``: measure an emulator's label-space systematics against its synthesizer (how far its
best fit lands from the truth, and how that varies across the box) and store them with the model
(``model.json``, key ``"label_systematics"``); see :mod:`stellarinf.validation.systematics`."""

from __future__ import annotations

import click

from ..errors import StellarinfError
from .options import model_output_option


class BadInput(click.ClickException):
    exit_code = 3


def reference_model(emulator, resolution: float):
    """The truth the emulator is compared with, and its pixels: the synthesizer with the physics of the emulator's
    training grid (tests replace this)."""
    from ..validation.setups import synthesizer_truth

    return synthesizer_truth(emulator, resolution)


@click.command(name="systematics")
@click.argument("model")
@click.option(
    "--stars",
    "n_stars",
    type=int,
    default=600,
    show_default=True,
    help="Noiseless synthesizer stars across the box (≥ 40 for the label-dependent model).",
)
@click.option("--snr", type=float, default=100.0, show_default=True, help="S/N that sets σ in the fits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the stars.")
@model_output_option
@click.option(
    "--save-stars",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write every star's truth and offset (JSON) here.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def systematics(model, n_stars, snr, seed, output, save_stars, quiet):
    """Label-space systematics of MODEL (a model directory): fit noiseless synthesizer stars with it (MAP from the
    truth) and store the rms offset per parameter and how it varies with Teff, log g, [Fe/H] and v sin i.

    Fits report the systematic sd at the star's own labels (`sd_sys`, in `sd_total`): wider for the stars the
    emulator finds hard (metal-poor stars; slow rotators for v sin i), narrower for the easy ones. A parameter keeps
    the label dependence only where it predicts stars it was not fitted on better than one rms over the box.
    0.2–0.4 s a star on two CPU cores with a Payne, about 4 s with TransformerPayne.

    \b
    Example:
      stellarinf systematics data/models/payne-mlp --stars 600
    """
    import datetime
    import math
    import time
    from pathlib import Path

    from ..emulators.model_io import MODEL_FILE, read_model_document
    from ..emulators.registry import load_emulator, shipped_name_refusal, update_destination
    from ..io.atomic import write_json_atomic
    from ..validation.systematics import MIN_STARS_FOR_MODEL, measure_label_systematics

    if not (math.isfinite(snr) and snr > 0):
        raise BadInput(f"--snr must be a positive number, got {snr}")
    if n_stars < 2:
        raise BadInput(
            f"--stars must be at least 2 (≥ {MIN_STARS_FOR_MODEL} for the label-dependent model), got {n_stars}"
        )
    refusal = shipped_name_refusal(model, output)
    if refusal:
        raise BadInput(refusal)
    try:
        t0 = time.perf_counter()
        emu = load_emulator(model)
        resolution = float(emu.resolution) if emu.resolution else 28000.0
        truth_model, wavelength = reference_model(emu, resolution)
        res = measure_label_systematics(
            emu, truth_model, wavelength, resolution, n_stars=n_stars, snr=snr, seed=seed, progress=not quiet
        )
        dest = update_destination(model, output)
        doc = read_model_document(dest)
        entry = {
            **res.to_json(),
            "resolution": resolution,
            "seed": seed,
            "command_options": f"--stars {n_stars} --snr {snr:g} --seed {seed}",
            "weights_sha256": (doc.get("weights") or {}).get("sha256"),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(time.perf_counter() - t0, 1),
        }
        doc["label_systematics"] = entry
        write_json_atomic(dest / MODEL_FILE, doc)
        if save_stars:
            write_json_atomic(
                Path(save_stars),
                {
                    "names": list(res.names),
                    "truths": res.truths.tolist(),
                    "bias": res.bias.tolist(),
                    "snr": res.snr,
                    "model": str(model),
                    "statistic": "bias = MAP - truth on noiseless synthesizer stars",
                },
            )
    except StellarinfError as exc:
        raise BadInput(str(exc)) from exc
    model_doc = entry.get("model") or {}
    click.echo(f"{n_stars} stars, S/N {snr:g}: rms (MAP − truth) and, where it varies, its range over the stars")
    for name, sd in entry["sd"].items():
        rng = (model_doc.get("sd_range_over_stars") or {}).get(name)
        varies = name in model_doc.get("label_dependent", [])
        extra = f"  {rng[0]:.3g}–{rng[1]:.3g} across the box" if varies and rng else ""
        click.echo(f"  {name:<8} {sd:.3g}{extra}")
    click.echo(f"systematics stored in {dest / MODEL_FILE} ({entry['elapsed_s']:.0f} s)")
