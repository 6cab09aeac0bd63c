"""``stellarinf synth``: one spectrum from the 1D LTE synthesizer, written as a FITS table."""

from __future__ import annotations

import click

from ..errors import LabelError


def parse_abundances(items) -> dict[str, float]:
    """``("Mg=0.1", "Ca=-0.2")`` → ``{"mg_fe": 0.1, "ca_fe": -0.2}``."""
    from ..labels import abundance_label

    out = {}
    for item in items:
        try:
            el, val = item.split("=", 1)
            out[abundance_label(el.strip())] = float(val)
        except ValueError as exc:
            if isinstance(exc, LabelError):
                raise
            raise LabelError(f"--abund {item!r}: use ELEMENT=[X/Fe], e.g. --abund Mg=0.1") from None
    return out


def write_spectrum_fits(path, wavelength, flux, continuum, header: dict, segments=None) -> None:
    """FITS binary table: wavelength (Å, vacuum), flux (normalised), continuum (erg/s/cm²/Å), and with several
    arms a ``segment`` column (arm index; ``read_spectrum`` reads the file back as a multi-arm spectrum, each arm's R
    from its ``RESOL<segment>`` card in ``header``); atomic."""
    import numpy as np
    from astropy.io import fits

    from ..io.atomic import atomic_path

    cols = [
        fits.Column(name="wavelength", format="D", unit="Angstrom", array=np.asarray(wavelength)),
        fits.Column(name="flux", format="D", unit="", array=np.asarray(flux)),
        fits.Column(name="continuum", format="D", unit="erg s-1 cm-2 Angstrom-1", array=np.asarray(continuum)),
    ]
    if segments is not None:
        cols.append(fits.Column(name="segment", format="K", array=np.asarray(segments)))
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["WAVEUNIT"] = ("Angstrom", "wavelength unit")
    hdu.header["MEDIUM"] = ("vacuum", "wavelengths are vacuum")
    hdu.header["FLUXUNIT"] = ("normalised", "flux divided by the continuum")
    hdu.header["CONTUNIT"] = ("erg s-1 cm-2 Angstrom-1", "surface flux F_lambda")
    for k, v in header.items():
        hdu.header[k[:8].upper()] = v
    with atomic_path(path, ".fits") as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)


@click.command(name="synth")
@click.option("--teff", type=float, required=True, help="Effective temperature (K).")
@click.option("--logg", type=float, required=True, help="Surface gravity log g (cgs).")
@click.option("--feh", type=float, required=True, help="[Fe/H] (dex).")
@click.option("--vmic", type=float, default=1.0, show_default=True, help="Microturbulence (km/s).")
@click.option("--abund", multiple=True, help="[X/Fe] of an element, e.g. --abund Mg=0.1 (repeatable).")
@click.option(
    "--window",
    default="galah-red",
    show_default=True,
    help="Model window (galah-blue, galah-green, galah-red, galah-ir, gaia-rvs) or an instrument whose arms the "
    "model windows cover (galah: all four arms in one multi-arm file).",
)
@click.option("--wmin", type=float, default=None, help="Start of a custom window (vacuum Å).")
@click.option("--wmax", type=float, default=None, help="End of a custom window (vacuum Å).")
@click.option("--resolution", type=float, default=None, help="Resolving power (default: the window's).")
@click.option("--vsini", type=float, default=0.0, show_default=True, help="Projected rotation (km/s).")
@click.option("--vmacro", type=float, default=0.0, show_default=True, help="Radial–tangential macroturbulence (km/s).")
@click.option("--fidelity", type=click.Choice(["realistic", "simple"]), default="realistic", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output FITS file.")
def synth(teff, logg, feh, vmic, abund, window, wmin, wmax, resolution, vsini, vmacro, fidelity, output):
    """Synthesise one spectrum and write wavelength (vacuum Å), normalised flux and continuum.

    \b
    --window names a model window (galah-red, gaia-rvs, ...) or an instrument whose arms it covers with several
    (galah: the four GALAH arms, written as one multi-arm file with a segment column).
    """
    import numpy as np

    import stellarinf

    from ..synth.observed import synthesize_observed

    labels = {"teff": teff, "logg": logg, "feh": feh, "vmic": vmic, **parse_abundances(abund)}
    windows = _windows(window, wmin, wmax, resolution)
    parts = []
    for win in windows:
        # the first synthesis compiles for ~10 s on a CPU: say what is happening before it
        click.echo(
            f"synthesizing {win.name} ({win.wmin:.0f}–{win.wmax:.0f} Å, {fidelity} fidelity, R={win.resolution:g}); "
            "the first call compiles (~10 s) …",
            err=True,
        )
        parts.append(synthesize_observed(labels, win, vsini=vsini, vmacro=vmacro, fidelity=fidelity))
    wl, flux, cont = (np.concatenate([p[k] for p in parts]) for k in range(3))
    win = windows[0]
    header = {
        "TEFF": teff,
        "LOGG": logg,
        "FEH": feh,
        "VMIC": vmic,
        "VSINI": vsini,
        "VMACRO": vmacro,
        "RESOLVE": win.resolution,
        "FIDELITY": fidelity,
        "WINDOW": win.name,
        "GENERATR": "stellarinf.synth",
        "VERSION": stellarinf.__version__,
    }
    for k, v in parse_abundances(abund).items():
        header[k.upper().replace("_", "")[:8]] = v
    segments = None
    if len(windows) > 1:
        header["WINDOW"] = window
        segments = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
        for k, w in enumerate(windows):
            header[f"RESOL{k}"] = w.resolution
            header[f"ARM{k}"] = w.name
    write_spectrum_fits(output, wl, flux, cont, header, segments)
    arms = "; ".join(f"{w.name} {p[0][0]:.2f}–{p[0][-1]:.2f} Å R={w.resolution:g}" for w, p in zip(windows, parts))
    click.echo(f"wrote {output} ({len(wl)} pixels, vacuum: {arms})")


def _windows(window, wmin, wmax, resolution):
    """The model windows to synthesise: one (a name, or wmin/wmax), or the set an instrument names (``galah``: its
    four arms' model windows), each at ``resolution`` if given."""
    import dataclasses

    from ..instruments import instruments, window_set
    from ..synth.observed import resolve_window

    if wmin is None and wmax is None and window in instruments():  # a model window is a set of one
        return [dataclasses.replace(w, resolution=float(resolution)) if resolution else w for w in window_set(window)]
    return [resolve_window(window, wmin, wmax, resolution)]
