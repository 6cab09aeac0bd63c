"""Shared command-line options: how to read an observed spectrum, where a command that measures a model stores
the result (``@model_output_option``), and the likelihood and sampler settings every fit takes
(``@fit_settings_options``: ``stellarinf fit`` and ``fit-catalog``, one definition so they cannot drift apart).

Every command that reads spectra takes the same options (``@spectrum_read_options``) and turns them into
:func:`~stellarinf.io.spectrum.read_spectrum` keywords with :func:`read_options_kwargs`, so that an error
message can name a CLI option (``--medium air``, ``--wavelength-unit nm``, ``--snr 50``) that every such
command has. Usage::

    @click.command()
    @click.argument("spectrum")
    @spectrum_read_options
    def cmd(spectrum, **kwargs):
        spec = read_spectrum(spectrum, **read_options_kwargs(kwargs))
"""

from __future__ import annotations

import math

import click

from ..io.readers import FORMATS
from ..observe.error_scale import ERROR_SCALE_MODES
from ..pipeline import DEFAULT_CONTINUUM, DEFAULT_STARTS

# option dest → read_spectrum keyword
READ_OPTION_KEYWORDS = {
    "medium": "medium",
    "wavelength_unit": "wavelength_unit",
    "wavelength_col": "wavelength_col",
    "flux_col": "flux_col",
    "error_col": "error_col",
    "snr": "default_snr",
    "format": "format",
    "hdu": "hdu",
}


def _positive_snr(ctx, param, value):
    if value is None or value.strip().lower() == "estimate":
        return None if value is None else "estimate"
    try:
        snr = float(value)
    except ValueError:
        raise click.BadParameter(f"give a positive S/N per pixel or 'estimate', got {value!r}") from None
    if not (math.isfinite(snr) and snr > 0):
        raise click.BadParameter(f"must be a positive S/N per pixel or 'estimate', got {value}")
    return snr


def _hdu(ctx, param, value):
    if value is None:
        return None
    return int(value) if value.strip().lstrip("-").isdigit() else value.strip()


def spectrum_read_options(func):
    """Add ``--medium``, ``--wavelength-unit``, ``--wavelength-col``, ``--flux-col``, ``--error-col``, ``--format``,
    ``--hdu`` and ``--snr``.

    ``--snr`` is the S/N per pixel *assumed* where the file has no usable uncertainties (σ = |flux|/S/N, said
    in a warning); without it such a file is refused. A command that already has an ``--snr`` with another
    meaning cannot take these options.
    """
    options = [
        click.option(
            "--medium",
            type=click.Choice(["air", "vacuum"]),
            default=None,
            help="Wavelength medium of the input when the file does not say (header AIRORVAC/CTYPE1='AWAV'...). "
            "Default: the file's, else vacuum (recorded in the outputs; an air spectrum read as vacuum "
            "fits RV ≈ -83 km/s).",
        ),
        click.option(
            "--wavelength-unit",
            default=None,
            metavar="UNIT",
            help="Unit of the wavelengths when the file has none (or to override it): Angstrom, nm or um.",
        ),
        click.option("--wavelength-col", default=None, metavar="NAME", help="Name of the wavelength column (tables)."),
        click.option("--flux-col", default=None, metavar="NAME", help="Name of the flux column (tables)."),
        click.option("--error-col", default=None, metavar="NAME", help="Name of the 1σ uncertainty column (tables)."),
        click.option(
            "--format",
            "format",
            default=None,
            type=click.Choice(list(FORMATS)),
            help="File layout (default: detected from the extension and the header).",
        ),
        click.option(
            "--hdu",
            default=None,
            callback=_hdu,
            metavar="N|NAME",
            help="FITS HDU holding the spectrum (index or EXTNAME); GALAH: 4 normalised (default) or 0.",
        ),
        click.option(
            "--snr",
            default=None,
            callback=_positive_snr,
            metavar="S/N|estimate",
            help="Where the file has no usable uncertainties: the S/N per pixel to assume (σ = |flux| / S/N), "
            "or 'estimate' to estimate the noise from the flux (DER_SNR); said in a warning.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def read_options_kwargs(params: dict) -> dict:
    """The ``read_spectrum`` keywords for the options of :func:`spectrum_read_options` found in ``params``
    (a command's keyword arguments; other entries are ignored, unset options are left out)."""
    return {kw: params[dest] for dest, kw in READ_OPTION_KEYWORDS.items() if params.get(dest) is not None}


def pop_read_options(params: dict) -> dict:
    """Like :func:`read_options_kwargs` but removes the options from ``params`` (for ``**kwargs`` commands)."""
    kwargs = read_options_kwargs(params)
    for dest in READ_OPTION_KEYWORDS:
        params.pop(dest, None)
    return kwargs


# `stellarinf fidelity` / `systematics`: a measurement stored in the model's model.json (registry.update_destination)
model_output_option = click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    default=None,
    help="Write the updated model here (default: update MODEL's model.json in place; a named model needs -o).",
)


def _continuum_degree(ctx, param, value):
    return value if value == "auto" else int(value)


def fit_settings_options(func):
    """Add the settings of :func:`stellarinf.fit_spectrum` that mean the same for one star and for a catalogue:
    ``--chains``, ``--draws``, ``--warmup``, ``--continuum``, ``--continuum-degree`` (passed on as ``"auto"`` or an
    int), ``--rv-max``, ``--vsini-max``, ``--vmacro-max``, ``--emulator-error``, ``--error-scale``, ``--jitter``,
    ``--physics-error``, ``--telluric-mask``, ``--clip-outliers`` and ``--starts``. What differs between the
    commands (the emulator, sampler, priors, fixed values, resolution, seed, budget) each defines itself."""
    options = [
        click.option("--chains", default=4, show_default=True, type=click.IntRange(1, 64)),
        click.option("--draws", default=1000, show_default=True, type=click.IntRange(10, 10**6)),
        click.option("--warmup", default=500, show_default=True, type=click.IntRange(0, 10**6)),
        click.option(
            "--continuum",
            type=click.Choice(["marginalise", "sample", "profile"]),
            default=DEFAULT_CONTINUUM,
            show_default=True,
        ),
        click.option(
            "--continuum-degree",
            default="auto",
            show_default=True,
            type=click.Choice(["auto"] + [str(d) for d in range(-1, 11)]),
            callback=_continuum_degree,
            help="Chebyshev degree per segment (-1 = none; auto = one per 40 Å, 2-8).",
        ),
        click.option(
            "--rv-max",
            default=300.0,
            show_default=True,
            help="|RV| bound (km/s); also the crop margin at the model's range edges.",
        ),
        click.option("--vsini-max", default=60.0, show_default=True),
        click.option("--vmacro-max", default=15.0, show_default=True),
        click.option(
            "--emulator-error",
            type=click.Choice(["modes", "white"]),
            default="modes",
            show_default=True,
            help="modes: integrate out the emulator's correlated error modes (when it has them; `stellarinf "
            "error-model`); white: treat its whole error as independent per pixel.",
        ),
        error_scale_option,
        click.option(
            "--jitter/--no-jitter", default=False, show_default=True, help="Fit an extra white-noise term ln_jitter."
        ),
        click.option(
            "--physics-error",
            type=click.Choice(["auto", "off"]),
            default="auto",
            show_default=True,
            help="auto: the synthesizer-vs-reality error measured on the observed Sun is in the likelihood (real "
            "spectra), and the ranges whose 1D LTE shape is wrong (the Balmer wings, the Ca II triplet cores, Paschen P14) are "
            "left out; off: for spectra made by the synthesizer itself.",
        ),
        click.option(
            "--telluric-mask/--no-telluric-mask",
            default=True,
            show_default=True,
            help="Mask the O2 A/B and strong H2O bands (observer's frame).",
        ),
        click.option(
            "--clip-outliers/--no-clip-outliers",
            default=True,
            show_default=True,
            help="After the MAP, mask pixels more than 5 sigma off the model (at most 2 %) and fit again.",
        ),
        click.option(
            "--starts",
            default=DEFAULT_STARTS,
            show_default=True,
            type=click.IntRange(1, 256),
            help="MAP starting points.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# the fits' (`fit`, `fit-catalog`) choice of :func:`stellarinf.fit_spectrum`'s ``error_scale``
error_scale_option = click.option(
    "--error-scale",
    type=click.Choice(ERROR_SCALE_MODES),
    default="star",
    show_default=True,
    help="star: where the emulator measured how its error varies over its box (`stellarinf error-model`; the broad "
    "sets), scale its error to this star (at the first MAP's labels, then held fixed); box: its error table as "
    "measured (the rms over the whole box).",
)
