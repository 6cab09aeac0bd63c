"""Issue #21 item 4: ESO Phase 3 1-D spectra (HARPS/UVES/FEROS ``ADP`` files) read by their own conventions."""

import numpy as np
import pytest
from astropy.io import fits

from stellarinf.errors import SpectrumError
from stellarinf.io.spectrum import read_spectrum
from stellarinf.wavelength import air_to_vacuum


def write_adp(path, *, ucd="em.wl;obs.atmos", families=("FLUX", "ERR"), spec_res=115000.0, n=400, qual_bad=(7,)):
    """A file laid out as the ESO archive writes Phase 3 spectra: primary header + one-row binary table."""
    wave = np.linspace(6500.0, 6540.0, n)
    flux = 1000.0 * (1.0 - 0.4 * np.exp(-0.5 * ((wave - 6520.0) / 0.1) ** 2))
    flux += np.random.default_rng(1).normal(0.0, 10.0, n)
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "ESO"
    primary.header["INSTRUME"] = "HARPS"
    primary.header["PRODCATG"] = "SCIENCE.SPECTRUM"
    primary.header["SPECSYS"] = "BARYCENT"
    if spec_res is not None:
        primary.header["SPEC_RES"] = spec_res
    cols = [fits.Column(name="WAVE", format=f"{n}D", unit="Angstrom", array=[wave])]
    arrays = {
        "FLUX": (flux, "adu"),
        "ERR": (np.full(n, 10.0), "adu"),
        "FLUX_REDUCED": (flux / 1000.0, ""),
        "ERR_REDUCED": (np.full(n, 0.05), ""),
    }
    for name in families:
        values, unit = arrays[name]
        cols.append(fits.Column(name=name, format=f"{n}E", unit=unit or None, array=[values]))
    qual = np.zeros(n, np.int32)
    qual[list(qual_bad)] = 1
    cols.append(fits.Column(name="QUAL", format=f"{n}J", array=[qual]))
    table = fits.BinTableHDU.from_columns(cols, name="SPECTRUM")
    if ucd is not None:
        table.header["TUCD1"] = ucd
    fits.HDUList([primary, table]).writeto(path)
    return wave


def test_eso_air_spectrum_resolution_and_quality(tmp_path):
    path = tmp_path / "ADP.2020-01-01T00_00_00.000.fits"
    wave = write_adp(path)
    spec = read_spectrum(path)
    assert spec.meta["format"] == "eso-phase3"
    # air said only by the UCD: converted to vacuum (the 82.7 km/s trap)
    assert (spec.input_medium, spec.medium_source) == ("air", "header")
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(wave), rtol=0, atol=1e-9)
    assert spec.resolution == 115000.0
    assert not spec.mask[7] and spec.mask.sum() == spec.n_pix - 1
    np.testing.assert_allclose(spec.sigma[spec.mask], 10.0)


def test_eso_vacuum_ucd_and_reduced_family(tmp_path):
    path = tmp_path / "ADP.vac.fits"
    wave = write_adp(path, ucd="em.wl", families=("FLUX_REDUCED", "ERR_REDUCED"))
    spec = read_spectrum(path)
    assert spec.input_medium == "vacuum" and spec.medium_source == "header"
    np.testing.assert_allclose(spec.wavelength, wave)
    assert spec.meta["columns"]["flux"] == "FLUX_REDUCED" and spec.meta["columns"]["error"] == "ERR_REDUCED"
    np.testing.assert_allclose(spec.sigma[spec.mask], 0.05, rtol=1e-6)


def test_eso_flux_is_never_paired_with_the_other_familys_error(tmp_path):
    # calibrated FLUX with only ERR_REDUCED present: the error is not borrowed across families (wrong by the whole
    # flux calibration); the file is refused with the ways forward, and --snr estimate reads it
    path = tmp_path / "ADP.mixed.fits"
    write_adp(path, families=("FLUX", "ERR_REDUCED"))
    with pytest.raises(SpectrumError, match="no uncertainty.*--snr"):
        read_spectrum(path)
    spec = read_spectrum(path, default_snr="estimate")
    assert spec.meta["columns"]["error"] is None
    assert not np.allclose(spec.sigma[spec.mask], 0.05)


def test_eso_without_ucd_is_said(tmp_path):
    path = tmp_path / "ADP.noucd.fits"
    write_adp(path, ucd=None)
    with pytest.warns(UserWarning, match="no UCD saying air or vacuum"):
        spec = read_spectrum(path)
    assert spec.medium_source == "default"
