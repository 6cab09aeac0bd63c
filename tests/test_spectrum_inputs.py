"""Issue #23: what a reader assumed is recorded and said; inputs a fit cannot use are refused with a fix."""

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from stellarinf.cli import cli
from stellarinf.commands.options import read_options_kwargs
from stellarinf.errors import SpectrumError, StellarinfError
from stellarinf.io.spectrum import Spectrum, SpectrumWarning, read_spectrum
from stellarinf.wavelength import air_to_vacuum, air_vacuum_rv_offset, rv_medium_warning


def toy(n=200, w0=6500.0):
    wl = np.linspace(w0, w0 + 40.0, n)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wl - w0 - 20.0) / 0.3) ** 2)
    return wl, flux, np.full(n, 0.02)


def write_csv(path, wl, flux, sigma=None, **extra):
    cols = {"wavelength": wl, "flux": flux, **extra}
    if sigma is not None:
        cols["error"] = sigma
    Table(cols).write(path, format="ascii.csv")
    return path


# ------------------------------------------------------------------------------------------------ medium
def test_medium_assumed_vacuum_is_said_and_recorded(tmp_path):
    wl, flux, sigma = toy()
    path = write_csv(tmp_path / "s.csv", wl, flux, sigma)
    with pytest.warns(SpectrumWarning, match="assumed vacuum.*--medium air"):
        spec = read_spectrum(path)
    assert (spec.input_medium, spec.medium_source) == ("vacuum", "default")
    np.testing.assert_array_equal(spec.wavelength, wl)
    prov = spec.provenance()
    assert prov["input_medium"] == "vacuum" and prov["medium_source"] == "default" and prov["source"] == str(path)
    # the caller says air: converted, recorded as the caller's word, survives select()
    air = read_spectrum(path, medium="air")
    assert (air.input_medium, air.medium_source) == ("air", "caller")
    np.testing.assert_allclose(air.wavelength, air_to_vacuum(wl), rtol=1e-13)
    sub = air.select(air.wavelength > 6515.0)
    assert (sub.input_medium, sub.medium_source) == ("air", "caller")


def test_medium_from_header_and_caller_disagreeing_with_it(tmp_path):
    wl, flux, sigma = toy()
    hdu = fits.table_to_hdu(Table({"wavelength": wl, "flux": flux, "error": sigma}))
    hdu.header["AIRORVAC"] = "air"
    path = tmp_path / "air.fits"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    spec = read_spectrum(path)
    assert (spec.input_medium, spec.medium_source) == ("air", "header")
    with pytest.warns(SpectrumWarning, match="file says its wavelengths are in air .* medium='vacuum' was given"):
        forced = read_spectrum(path, medium="vacuum")
    assert (forced.input_medium, forced.medium_source) == ("vacuum", "caller")
    np.testing.assert_array_equal(forced.wavelength, wl)


def test_wavelength_unit_recorded_with_its_source(tmp_path):
    wl, flux, sigma = toy()
    path = write_csv(tmp_path / "nm.csv", wl / 10.0, flux, sigma)
    with pytest.raises(SpectrumError, match="--wavelength-unit nm"):  # the CLI user is told the CLI option
        read_spectrum(path, medium="vacuum")
    spec = read_spectrum(path, medium="vacuum", wavelength_unit="nm")
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-14)
    assert (spec.input_wavelength_unit, spec.wavelength_unit_source) == ("nm", "caller")
    t = Table({"wavelength": wl / 1e4 * u.um, "flux": flux, "error": sigma})
    t.write(tmp_path / "um.ecsv")
    spec = read_spectrum(tmp_path / "um.ecsv", medium="vacuum")
    assert spec.wavelength_unit_source == "header" and u.Unit(spec.input_wavelength_unit) == u.um
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-13)
    plain = read_spectrum(write_csv(tmp_path / "aa.csv", wl, flux, sigma), medium="vacuum")
    assert (plain.input_wavelength_unit, plain.wavelength_unit_source) == ("Angstrom", "default")


# --------------------------------------------------------------------------------------- RV vs medium
def test_air_vacuum_rv_offset_matches_halpha():
    # Hα: 6564.614 Å in vacuum, 6562.801 Å in air (NIST) → an air spectrum read as vacuum shows RV = c (air/vac − 1)
    expected = 299792.458 * (6562.801 / 6564.614 - 1.0)
    assert expected == pytest.approx(-82.80, abs=0.01)
    assert air_vacuum_rv_offset([6564.614]) == pytest.approx(expected, abs=0.05)
    assert air_vacuum_rv_offset(np.linspace(6480, 6740, 50)) == pytest.approx(-82.78, abs=0.05)


def test_rv_medium_warning():
    wl = np.linspace(6480.0, 6740.0, 1000)
    msg = rv_medium_warning(-82.1, wl, "vacuum", medium_source="default")
    assert msg is not None and "--medium air" in msg and "assumed" in msg
    assert rv_medium_warning(+82.9, wl, "air", medium_source="format") is not None
    assert "--medium vacuum" in rv_medium_warning(+82.9, wl, "air")
    assert rv_medium_warning(0.0, wl, "vacuum") is None
    assert rv_medium_warning(-82.7, wl, "air") is None  # read as air: −82.7 is not the suspicious side
    assert rv_medium_warning(-75.0, wl, "vacuum") is None  # 7.8 km/s away
    assert rv_medium_warning(-75.0, wl, "vacuum", rv_sigma_kms=2.0) is not None  # within 3 + 3σ
    assert rv_medium_warning(float("nan"), wl, "vacuum") is None
    with pytest.raises(StellarinfError, match="medium"):
        rv_medium_warning(0.0, wl, "water")


# ------------------------------------------------------------------------------------------ CLI options
def test_read_options_reach_the_reader_through_the_cli(tmp_path):
    wl, flux, sigma = toy()
    path = write_csv(tmp_path / "odd.csv", wl / 10.0, flux, None, noise_col=sigma)
    Table({"lam_nm": wl / 10.0, "counts": flux, "noise_col": sigma}).write(path, format="ascii.csv", overwrite=True)
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(path)])
    assert res.exit_code == 3 and "--wavelength-col" in res.output, res.output
    res = runner.invoke(
        cli,
        [
            "inspect",
            str(path),
            "--wavelength-col",
            "lam_nm",
            "--flux-col",
            "counts",
            "--error-col",
            "noise_col",
            "--wavelength-unit",
            "nm",
            "--medium",
            "air",
        ],
    )
    assert res.exit_code == 0, res.output
    vac = air_to_vacuum(wl)
    assert f"{vac.min():.3f}–{vac.max():.3f} Å vacuum; read as air (caller), unit nm (caller)" in res.output
    assert read_options_kwargs({"medium": "air", "snr": 50.0, "flux_col": None, "other": 1}) == {
        "medium": "air",
        "default_snr": 50.0,
    }


# ------------------------------------------------------------------------------------- fit-readiness
def test_validate_for_fit_refuses_too_few_pixels_and_structureless_flux():
    from stellarinf.io.validate import usable_pixels, validate_for_fit

    wl, flux, sigma = toy(n=40)
    spec = Spectrum(wl, flux, sigma)
    assert validate_for_fit(spec, 16) == 40
    five = spec.select(np.abs(np.arange(40) - 20) <= 2)  # 5 pixels across the line
    with pytest.raises(SpectrumError, match="5 usable pixel\\(s\\) but the fit has 16 free parameters.*at least 17"):
        validate_for_fit(five, 16)
    assert validate_for_fit(five, 4) == 5
    masked = Spectrum(wl, flux, sigma, mask=np.arange(40) < 16)  # 16 usable pixels for 16 parameters: dof 0
    assert usable_pixels(masked).sum() == 16
    with pytest.raises(SpectrumError, match="16 usable"):
        validate_for_fit(masked, 16)
    with pytest.raises(SpectrumError, match="flux is zero at all 40"):
        validate_for_fit(Spectrum(wl, np.zeros(40), sigma), 3)
    with pytest.raises(SpectrumError, match="flux is constant \\(1\\) at all 40"):
        validate_for_fit(Spectrum(wl, np.ones(40), sigma), 3)
    # a constant over the used pixels, even if the masked ones differ
    with pytest.raises(SpectrumError, match="constant"):
        validate_for_fit(Spectrum(wl, np.where(np.arange(40) < 30, 2.0, 5.0), sigma, mask=np.arange(40) < 30), 3)


def test_all_nan_flux_and_all_zero_errors_are_clear_errors(tmp_path):
    wl, flux, sigma = toy()
    with pytest.raises(SpectrumError, match="every pixel is masked"), pytest.warns(SpectrumWarning):
        read_spectrum(write_csv(tmp_path / "nan.csv", wl, np.full(wl.size, np.nan), sigma), medium="vacuum")
    zero = write_csv(tmp_path / "zero.csv", wl, flux, np.zeros(wl.size))
    with pytest.raises(SpectrumError, match="zero, negative or NaN at every pixel.*--snr"):
        read_spectrum(zero, medium="vacuum")
    with pytest.warns(SpectrumWarning, match="assumed σ = \\|flux\\| / 80"):
        spec = read_spectrum(zero, medium="vacuum", default_snr=80.0)
    np.testing.assert_allclose(spec.sigma, flux / 80.0)
    with pytest.raises(SpectrumError, match="no uncertainty column.*--snr"):
        read_spectrum(write_csv(tmp_path / "none.csv", wl, flux), medium="vacuum")
    res = CliRunner().invoke(cli, ["inspect", str(zero), "--medium", "vacuum"])
    assert res.exit_code == 3 and "--snr" in res.output
    res = CliRunner().invoke(cli, ["inspect", str(zero), "--medium", "vacuum", "--snr", "80"])
    assert res.exit_code == 0 and "median S/N per pixel 80" in res.output, res.output


def test_fixed_labels_outside_the_box_are_refused():
    from stellarinf.errors import LabelError
    from stellarinf.io.validate import validate_fixed_labels
    from stellarinf.labels import LabelSpace

    space = LabelSpace.from_bounds({"teff": (4000.0, 7000.0), "logg": (1.0, 5.0)})
    assert validate_fixed_labels({"teff": 5000, "vmacro": 0.0}, space) == {"teff": 5000.0, "vmacro": 0.0}
    with pytest.raises(LabelError, match="teff=50000 is outside the model's training box \\[4000, 7000\\]"):
        validate_fixed_labels({"teff": 50000.0}, space)
    with pytest.raises(LabelError, match="finite"):
        validate_fixed_labels({"logg": float("nan")}, space)


# ------------------------------------------------------------------------------------------- specutils
def test_specutils_round_trip_with_units_uncertainty_and_mask():
    specutils = pytest.importorskip("specutils")
    from astropy.nddata import InverseVariance, StdDevUncertainty

    SpecutilsSpectrum = getattr(specutils, "Spectrum", None) or specutils.Spectrum1D
    wl, flux, sigma = toy(n=120)
    bad = np.zeros(wl.size, bool)
    bad[[3, 40]] = True  # specutils: True = bad pixel
    unit = u.erg / u.s / u.cm**2 / u.AA
    s1 = SpecutilsSpectrum(
        spectral_axis=wl / 10.0 * u.nm, flux=flux * unit, uncertainty=StdDevUncertainty(sigma * unit), mask=bad
    )
    spec = read_spectrum(s1, medium="vacuum")
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-14)
    np.testing.assert_array_equal(spec.flux, flux)
    np.testing.assert_allclose(spec.sigma[~bad], sigma[~bad])
    np.testing.assert_array_equal(spec.mask, ~bad)
    assert spec.meta["format"] == "specutils" and u.Unit(spec.meta["flux_unit"]) == unit
    assert (spec.input_wavelength_unit, spec.wavelength_unit_source) == ("nm", "header")
    # and back: same arrays, specutils' mask convention
    back = spec.to_specutils()
    np.testing.assert_allclose(back.spectral_axis.to_value(u.AA), wl, rtol=1e-14)
    np.testing.assert_array_equal(back.mask, bad)
    again = Spectrum.from_specutils(back, medium="vacuum")
    np.testing.assert_array_equal(again.flux, spec.flux)
    np.testing.assert_allclose(again.sigma[again.mask], spec.sigma[spec.mask])
    # inverse variance in another unit; air by the caller
    ivar = InverseVariance(1.0 / (sigma * 10.0) ** 2 / (u.erg / u.s / u.cm**2 / u.nm) ** 2)
    s2 = SpecutilsSpectrum(spectral_axis=wl * u.AA, flux=flux * unit, uncertainty=ivar)
    spec2 = read_spectrum(s2, medium="air")
    np.testing.assert_allclose(spec2.sigma, sigma, rtol=1e-12)  # 10σ per nm = σ per Å
    np.testing.assert_allclose(spec2.wavelength, air_to_vacuum(wl), rtol=1e-13)
    assert (spec2.input_medium, spec2.medium_source) == ("air", "caller")
    # no uncertainty: the usual clear error
    with pytest.raises(SpectrumError, match="no uncertainty.*--snr"):
        read_spectrum(SpecutilsSpectrum(spectral_axis=wl * u.AA, flux=flux * unit), medium="vacuum")


def test_specutils_like_objects_by_duck_typing_and_wrong_types():
    class Fake:  # the attributes read_spectrum uses, without specutils
        spectral_axis = np.linspace(0.65, 0.654, 50) * u.um
        flux = (1.0 + 0.1 * np.cos(np.arange(50))) * u.dimensionless_unscaled
        uncertainty = None
        mask = None
        meta = {"header": {"AIRORVAC": "air"}}

    spec = read_spectrum(Fake(), default_snr=100.0)
    assert (spec.input_medium, spec.medium_source) == ("air", "header")
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(np.linspace(6500.0, 6540.0, 50)), rtol=1e-13)
    np.testing.assert_allclose(spec.sigma, np.abs(Fake.flux.value) / 100.0)
    with pytest.raises(SpectrumError, match="file path or a specutils.*not a list"):
        read_spectrum([1, 2, 3])


# ------------------------------------------------------------------------------------- GALAH versions
def galah_iraf6_hdul(n=300, crval=6480.0, cdelt=0.05, version="6.0", names=None):
    """A GALAH iraf-6.0 (DR4-era) reduced file: 8 1-D images on one linear air-Å WCS, as the reduction writes them."""
    wl = crval + cdelt * np.arange(n)
    line = 1.0 - 0.4 * np.exp(-0.5 * ((wl - wl[n // 2]) / 0.15) ** 2)
    counts = 2000.0 * line
    norm = line * 1.002
    rel = np.full(n, 0.01)
    rel[17] = 0.0
    telluric = np.ones(n) - 0.2 * np.exp(-0.5 * ((wl - wl[40]) / 0.1) ** 2)
    fwhm = wl / 28_500.0
    names = names or [
        "",
        "normalized",
        "relative_error",
        "sky",
        "teluric",
        "scattered",
        "cross_talk",
        "resolution_profile",
    ]
    arrays = [counts, norm, rel, np.full(n, 30.0), telluric, np.full(n, 3.0), np.zeros(n), fwhm]
    hdus = []
    for i, (arr, name) in enumerate(zip(arrays, names)):
        h = fits.Header(
            {
                "CRVAL1": crval,
                "CDELT1": cdelt,
                "CRPIX1": 1.0,
                "CTYPE1": "Wavelength",
                "CUNIT1": "angstroms",
                "PIPE_VER": version,
                "ORIGIN": "IRAF reduction pipeline",
                "RES": 0.23,
                "INSTRUME": "HERMES-2dF",
            }
        )
        if name:
            h["EXTNAME"] = name
        hdus.append(fits.PrimaryHDU(arr, header=h) if i == 0 else fits.ImageHDU(arr, header=h))
    return fits.HDUList(hdus), wl, counts, norm, rel


def test_galah_iraf6_layout_is_read_by_its_own_rule(tmp_path):
    hdul, wl_air, counts, norm, rel = galah_iraf6_hdul()
    path = tmp_path / "2403150012013012.fits"
    hdul.writeto(path)
    with pytest.warns(SpectrumWarning, match="1 GALAH pixel"):
        spec = read_spectrum(path)
    assert spec.meta["format"] == "galah-iraf6" and spec.meta["reduction"] == "iraf 6.0" and spec.meta["ccd"] == 2
    np.testing.assert_array_equal(spec.flux, norm)  # HDU1, not the telluric HDU4 the DR3 rule would take
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(wl_air), rtol=0, atol=1e-6)
    assert (spec.input_medium, spec.medium_source) == ("air", "format")
    good = np.arange(wl_air.size) != 17
    np.testing.assert_array_equal(spec.mask, good)
    np.testing.assert_allclose(spec.sigma[good], 0.01 * norm[good], rtol=1e-12)
    assert spec.resolution == pytest.approx(28_500.0, rel=1e-3)  # from the resolution profile (HDU7)
    with pytest.warns(SpectrumWarning):
        raw = read_spectrum(path, hdu=0)
    np.testing.assert_array_equal(raw.flux, counts)
    with pytest.raises(SpectrumError, match="HDU1 \\(normalised, default\\) or HDU0"):
        read_spectrum(path, hdu=4)


def test_galah_unknown_or_inconsistent_reduction_versions_are_refused(tmp_path):
    hdul, *_ = galah_iraf6_hdul(version="7.1")
    hdul.writeto(tmp_path / "v7.fits")
    with pytest.raises(
        SpectrumError, match="version '7.1' \\(PIPE_VER\\) is not one this reader knows.*--format fits-image --hdu N"
    ):
        read_spectrum(tmp_path / "v7.fits")
    # a 6.0 stamp on extensions that are not the 6.0 layout
    hdul, *_ = galah_iraf6_hdul(names=["", "a", "b", "c", "d", "e", "f", "g"])
    hdul.writeto(tmp_path / "odd.fits")
    with pytest.raises(SpectrumError, match="version 6.0 \\(PIPE_VER\\) but its extensions"):
        read_spectrum(tmp_path / "odd.fits")
    # the escape hatch the message names works
    with pytest.warns(SpectrumWarning):
        plain = read_spectrum(tmp_path / "v7.fits", format="fits-image", hdu=1, default_snr=100.0)
    assert plain.meta["format"] == "fits-image"


def test_noise_estimated_from_the_flux_when_asked(tmp_path):
    from stellarinf.io.spectrum import der_snr_noise

    rng = np.random.default_rng(4)
    wl = np.linspace(6500.0, 6600.0, 4000)
    smooth = 1.0 - 0.3 * np.exp(-0.5 * ((wl - 6550.0) / 0.8) ** 2) + 0.05 * np.sin(wl / 7.0)
    noisy = smooth + rng.normal(0.0, 0.02, wl.size)
    assert der_snr_noise(noisy) == pytest.approx(0.02, rel=0.05)
    assert der_snr_noise(rng.normal(0.0, 3.0, 20000)) == pytest.approx(3.0, rel=0.03)  # pure white noise: unbiased
    path = write_csv(tmp_path / "noerr.csv", wl, noisy)
    with pytest.warns(SpectrumWarning, match="estimated σ from the flux itself \\(DER_SNR.*S/N ≈"):
        spec = read_spectrum(path, medium="vacuum", default_snr="estimate")
    assert np.all(spec.sigma == spec.sigma[0]) and spec.sigma[0] == pytest.approx(0.02, rel=0.05)
    assert "DER_SNR" in " ".join(spec.meta["notes"])
    with pytest.raises(SpectrumError, match="no pixel-to-pixel noise"):
        read_spectrum(write_csv(tmp_path / "flat.csv", wl, smooth * 0 + 1.0), medium="vacuum", default_snr="estimate")
    with pytest.raises(SpectrumError, match="positive S/N or 'estimate'"):
        read_spectrum(path, medium="vacuum", default_snr="guess")
    r = CliRunner().invoke(cli, ["inspect", str(path), "--medium", "vacuum", "--snr", "estimate"])
    assert r.exit_code == 0 and "median S/N per pixel" in r.output and "DER_SNR" in r.output, r.output
    r = CliRunner().invoke(cli, ["inspect", str(path), "--snr", "lots"])
    assert r.exit_code == 2 and "'estimate'" in r.output
