"""The observed Sun per model window: which solar flux atlas extract covers it and which parts no 1D LTE model fits.

One registry for everything that compares the synthesizer with the observed Sun (the log gf calibration,
the synthesizer-vs-Sun validation, the Sun fits): the Kurucz (2005) disk-integrated solar flux atlas
(Kitt Peak FTS, telluric lines removed, vacuum wavelengths; from the PyPI package ``cometspec==0.1.1``, see
``../shared/docs/data-sources.md``), cut into one file per window, ``sun_kurucz2005_<lo>_<hi>_vac.csv.gz``
(columns wavelength [vacuum Å], flux; header row). The files are not shipped (they are the project's shared
data); scripts take the folder that holds them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SolarAtlasWindow:
    """The observed Sun for one model window.

    Attributes:
        window: model window name (``data/instruments.ecsv``, kind ``window``).
        atlas: file name of the Kurucz atlas extract that covers it.
        calibrated_range: vacuum Å range fitted by the log gf calibration (inside the extract, ~2 Å from its ends).
        masked: vacuum Å ranges no log gf can fix (chromospheric / non-LTE cores, telluric band residuals), left
            out of calibrations and rms figures so neighbouring lines do not chase them.
        margin: Å synthesised beyond a calibrated chunk (wide for the Ca II triplet's wings).
    """

    window: str
    atlas: str
    calibrated_range: tuple[float, float]
    masked: tuple[tuple[float, float], ...] = ()
    margin: float = 3.0


SOLAR_ATLAS = {
    w.window: w
    for w in (
        # Hβ 4862.7 Å: chromospheric core
        SolarAtlasWindow("galah-blue", "sun_kurucz2005_4700_4910_vac.csv.gz", (4712.0, 4908.0), ((4860.5, 4864.9),)),
        SolarAtlasWindow("galah-green", "sun_kurucz2005_5640_5880_vac.csv.gz", (5642.0, 5878.0)),
        # Hα 6564.6 Å: chromospheric core
        SolarAtlasWindow("galah-red", "sun_kurucz2005_6470_6745_vac.csv.gz", (6472.0, 6744.0), ((6561.5, 6567.5),)),
        # the whole O2 A band, head and P branch (7594-7700 Å air): the source bridged it with straight lines and left
        # telluric residues (its provenance: "mask 7596-7702 for line-level work"), so what is there is not the Sun
        SolarAtlasWindow("galah-ir", "sun_kurucz2005_7580_7895_vac.csv.gz", (7582.0, 7893.0), ((7596.0, 7702.0),)),
        # Ca II triplet cores
        SolarAtlasWindow(
            "gaia-rvs",
            "sun_kurucz2005_8460_8750_vac.csv.gz",
            (8462.0, 8748.0),
            ((8499.0, 8502.0), (8543.0, 8546.0), (8663.0, 8666.0)),
            margin=10.0,
        ),
    )
}


def solar_atlas_window(window: str) -> SolarAtlasWindow:
    """The registry entry of ``window``; a clear error naming the windows that have one."""
    try:
        return SOLAR_ATLAS[window]
    except KeyError:
        raise KeyError(
            f"no observed-Sun atlas is registered for window {window!r}; windows with one: {', '.join(SOLAR_ATLAS)}"
        ) from None
