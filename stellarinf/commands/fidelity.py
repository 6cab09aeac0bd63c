"""``stellarinf fidelity``: measure how far an emulator's Cramér–Rao bounds are from the synthesizer's, and
store the ratio per label with the model (``model.json``, key ``"fidelity"``); see
:mod:`stellarinf.emulator_fidelity`."""

from __future__ import annotations

import click

from ..errors import StellarinfError
from .options import model_output_option


class BadInput(click.ClickException):
    exit_code = 3


def reference_model(emulator, window):
    """The truth the emulator is compared with: the synthesizer over its window (tests replace this)."""
    from ..emulator_fidelity import synthesizer_for

    return synthesizer_for(emulator, window)


@click.command(name="fidelity")
@click.argument("model")
@click.option(
    "--snr",
    type=float,
    default=100.0,
    show_default=True,
    help="S/N per pixel at which the emulator's own error is weighed against the noise.",
)
@model_output_option
@click.option("--quiet", is_flag=True, help="Print only the result.")
def fidelity(model, snr, output, quiet):
    """Emulator fidelity of MODEL (a model directory): the ratio CRB(emulator)/CRB(synthesizer) per label.

    Computed at the seven named reference stars inside the model's label box (dwarfs, turn-off stars and
    giants, solar to metal-poor) on the model's own wavelength range and resolving power, with the model's error in the
    noise (scaled to each star where the model measured its error scale, as a fit does) and without; the worst
    star's ratio per label is stored in MODEL/model.json. `stellarinf crb`
    prints it with every forecast from this model and warns where it is below 0.8 (the emulator claims more
    precision than the synthesizer's spectrum carries). Takes minutes: the synthesizer's derivatives.

    \b
    Example:
      stellarinf fidelity data/models/transformer-payne-small
    """
    import math
    import time

    from ..emulator_fidelity import REFERENCE_STARS, emulator_window, measure_fidelity, store_fidelity
    from ..emulators.registry import load_emulator, shipped_name_refusal, update_destination

    if not (math.isfinite(snr) and snr > 0):
        raise BadInput(f"--snr must be a positive number, got {snr}")
    refusal = shipped_name_refusal(model, output)
    if refusal:
        raise BadInput(refusal)
    try:
        t0 = time.perf_counter()
        emu = load_emulator(model)
        window = emulator_window(emu)
        log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
        log(
            f"fidelity of {model}: {window.wmin:.1f}–{window.wmax:.1f} Å at R {window.resolution:,.0f}, S/N {snr:g}; "
            f"{len(REFERENCE_STARS)} reference stars, each a Cramér–Rao forecast with the emulator and with the synthesizer"
        )
        truth = reference_model(emu, window)
        result = measure_fidelity(emu, truth, snr=snr, window=window, progress=log)
        dest = update_destination(model, output)
        elapsed = time.perf_counter() - t0
        command = f"stellarinf fidelity {model} --snr {snr:g}" + (f" -o {output}" if output else "")
        store_fidelity(dest, result, command=command, elapsed_s=elapsed)
    except StellarinfError as exc:
        raise BadInput(str(exc)) from exc
    ratio, noise = result.ratio, result.ratio_noise_only

    def cell(r):
        return "n/a" if r is None else f"{r:.2f}"

    width = max(len(n) for n in result.names)
    click.echo(f"{'label'.ljust(width)}  with its error  noise only")
    for n in result.names:
        flag = "  over-claims" if any(r is not None and r < 0.8 for r in (ratio[n], noise[n])) else ""
        click.echo(f"{n.ljust(width)}  {cell(ratio[n]).rjust(14)}  {cell(noise[n]).rjust(10)}{flag}")
    click.echo(f"fidelity stored in {dest / 'model.json'} ({elapsed:.0f} s)")
