"""``stellarinf inspect``: read a spectrum as ``fit`` would and say what was read and what was assumed.

Seconds instead of a fit's minutes to find a wrong column, unit or air/vacuum medium: the same reader and
the same ``--medium/--wavelength-unit/--*-col/--snr`` options as ``fit``.
"""

from __future__ import annotations

import click

from ..errors import StellarinfError
from .options import read_options_kwargs, spectrum_read_options

EXIT_BAD_INPUT = 3


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


def describe(spec) -> list[str]:
    """Lines saying what was read (pure; the command prints them)."""
    import numpy as np

    from ..io.spectrum import describe_resolution

    prov = spec.provenance()
    used = spec.mask
    wl = spec.wavelength
    lines = [
        f"file: {prov['source']} (format {prov['format']})",
        f"pixels: {int(used.sum())} used of {spec.n_pix}; segments: {len(spec.segment_ids)}",
        f"wavelength: {wl.min():.3f}–{wl.max():.3f} Å vacuum; read as {prov['input_medium']} ({prov['medium_source']}), "
        f"unit {prov['input_wavelength_unit']} ({prov['wavelength_unit_source']})",
        f"flux: median {np.median(spec.flux[used]):.4g}{' ' + spec.meta['flux_unit'] if spec.meta.get('flux_unit') else ''}; "
        f"median S/N per pixel {spec.snr():.3g}",
        "resolving power per arm: "
        + ", ".join(f"arm {k}: {describe_resolution(r)}" for k, r in spec.resolution.items())
        if spec.is_multi_arm
        else f"resolving power: {describe_resolution(spec.resolution)}"
        if spec.resolution is not None
        else "resolving power: not in the file (give --resolution to fit)",
    ]
    lines += [f"note: {n}" for n in spec.meta.get("notes", [])]
    return lines


@click.command(name="inspect")
@click.argument("spectrum", type=click.Path(dir_okay=False))
@spectrum_read_options
def inspect(spectrum, **options):
    """Read SPECTRUM as `fit` would and print what was read and assumed (medium, unit, pixels, S/N, R)."""
    import warnings

    from ..io.spectrum import read_spectrum

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # every warning is also a note, printed below
            spec = read_spectrum(spectrum, **read_options_kwargs(options))
    except StellarinfError as exc:
        raise BadInput(str(exc)) from exc
    click.echo("\n".join(describe(spec)))
