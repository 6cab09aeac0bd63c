import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from stellarinf.errors import SpectrumError, WavelengthError
from stellarinf.io.spectrum import Spectrum, SpectrumWarning, crop_to_model, read_spectrum, write_spectrum_fits
from stellarinf.labels import LabelSpace
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import air_to_vacuum, log_uniform_grid


def toy(n=200, w0=6500.0):
    wl = np.linspace(w0, w0 + 40.0, n)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wl - w0 - 20.0) / 0.3) ** 2)
    sigma = np.full(n, 0.02)
    return wl, flux, sigma


def write_table(path, columns, units=None, header=None):
    t = Table(columns)
    for name, unit in (units or {}).items():
        t[name].unit = unit
    hdu = fits.table_to_hdu(t)
    for k, v in (header or {}).items():
        hdu.header[k] = v
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def test_round_trip_of_the_native_format(tmp_path):
    wl, flux, sigma = toy()
    mask = np.ones(wl.size, bool)
    mask[10:15] = False
    seg = (wl > 6520).astype(int)
    spec = Spectrum(wl, flux, sigma, mask, seg, {"object": "toy"}, resolution=28_000.0)
    path = tmp_path / "out" / "spec.fits"
    write_spectrum_fits(path, spec)
    back = read_spectrum(path)
    np.testing.assert_array_equal(back.wavelength, wl)
    np.testing.assert_array_equal(back.flux, flux)
    np.testing.assert_array_equal(back.sigma, sigma)
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_array_equal(back.segments, seg)
    assert back.resolution == 28_000.0
    assert back.meta["medium_in_file"] == "vacuum"
    assert not list(path.parent.glob(".*tmp"))  # atomic write leaves no temporary behind


def test_fits_table_units_ivar_and_case_insensitive_names(tmp_path):
    wl, flux, sigma = toy()
    ivar = 1 / sigma**2
    ivar[5] = 0.0  # the usual bad-pixel flag
    path = tmp_path / "t.fits"
    write_table(path, {"WAVE": wl / 10.0, "FLUX": flux, "IVAR": ivar}, units={"WAVE": "nm"})
    with pytest.warns(SpectrumWarning, match="1 pixel"):
        spec = read_spectrum(path)
    np.testing.assert_allclose(spec.wavelength, wl, rtol=1e-14)  # nm → Å
    np.testing.assert_allclose(spec.sigma[spec.mask], sigma[spec.mask], rtol=1e-12)
    assert not spec.mask[5] and spec.mask.sum() == wl.size - 1


def test_fits_table_air_wavelengths_from_header_are_converted(tmp_path):
    wl, flux, sigma = toy()
    path = tmp_path / "air.fits"
    write_table(
        path,
        {"wavelength": wl, "flux": flux, "error": sigma},
        units={"wavelength": "Angstrom"},
        header={"AIRORVAC": "air"},
    )
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(wl), rtol=1e-13)
    assert spec.wavelength[0] - wl[0] == pytest.approx(1.80, abs=0.02)  # ~1.8 Å at 6500 Å
    # declared by the caller instead
    path2 = tmp_path / "plain.fits"
    write_table(path2, {"wavelength": wl, "flux": flux, "error": sigma})
    np.testing.assert_allclose(read_spectrum(path2, medium="air").wavelength, air_to_vacuum(wl), rtol=1e-13)
    np.testing.assert_allclose(read_spectrum(path2).wavelength, wl)


def test_fits_image_linear_wcs_with_error_extension(tmp_path):
    n = 300
    flux = np.linspace(0.9, 1.1, n)
    hdr = fits.Header({"CRVAL1": 5000.0, "CDELT1": 0.05, "CRPIX1": 11.0, "CUNIT1": "Angstrom", "CTYPE1": "WAVE"})
    path = tmp_path / "img.fits"
    fits.HDUList([fits.PrimaryHDU(flux, header=hdr), fits.ImageHDU(np.full(n, 0.01), name="ERROR")]).writeto(path)
    spec = read_spectrum(path)
    expected = 5000.0 + 0.05 * (np.arange(1, n + 1) - 11.0)
    np.testing.assert_allclose(spec.wavelength, expected)
    np.testing.assert_allclose(spec.sigma, 0.01)
    # CD1_1 instead of CDELT1, nm unit, air via CTYPE1 = AWAV
    hdr2 = fits.Header({"CRVAL1": 500.0, "CD1_1": 0.005, "CRPIX1": 1.0, "CUNIT1": "nm", "CTYPE1": "AWAV"})
    path2 = tmp_path / "img2.fits"
    fits.HDUList([fits.PrimaryHDU(flux, header=hdr2), fits.ImageHDU(1 / 0.01**2 * np.ones(n), name="IVAR")]).writeto(
        path2
    )
    spec2 = read_spectrum(path2)
    np.testing.assert_allclose(spec2.wavelength, air_to_vacuum(5000.0 + 0.05 * np.arange(n)), rtol=1e-13)
    np.testing.assert_allclose(spec2.sigma, 0.01)


def test_fits_image_log_linear_wcs(tmp_path):
    n = 500
    flux = np.ones(n)
    for i, (hdr, expected) in enumerate(
        [
            (
                {"CRVAL1": np.log10(6000.0), "CDELT1": 1e-5, "DC-FLAG": 1},
                10 ** (np.log10(6000.0) + 1e-5 * np.arange(n)),
            ),
            ({"CRVAL1": 6000.0, "CDELT1": 0.1, "CTYPE1": "WAVE-LOG"}, 6000.0 * np.exp(0.1 * np.arange(n) / 6000.0)),
        ]
    ):
        path = tmp_path / f"log{i}.fits"
        fits.HDUList([fits.PrimaryHDU(flux, header=fits.Header(hdr)), fits.ImageHDU(np.full(n, 0.02))]).writeto(path)
        spec = read_spectrum(path)
        np.testing.assert_allclose(spec.wavelength, expected, rtol=1e-13)
        np.testing.assert_allclose(spec.sigma, 0.02)  # unnamed image after the flux = σ


def test_apogee_layout_uses_first_row_log_lambda_vacuum_and_masks_gaps(tmp_path):
    n = 8575
    flux = np.ones((3, n))
    flux[0, 3000:3100] = 0.0  # chip gap
    flux[1] *= 2.0
    err = np.full((3, n), 0.01)
    hdr = fits.Header({"CRVAL1": 4.179, "CDELT1": 6e-6, "CRPIX1": 1, "CTYPE1": "LOG-LINEAR", "DC-FLAG": 1})
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "apo25m"
    path = tmp_path / "apStar-dr17-2M00000000+0000000.fits"
    fits.HDUList(
        [
            primary,
            fits.ImageHDU(flux, header=hdr),
            fits.ImageHDU(err, header=hdr),
            fits.ImageHDU(np.zeros((3, n), np.int32)),
        ]
    ).writeto(path)
    spec = read_spectrum(path, medium=None)
    np.testing.assert_allclose(spec.wavelength, 10 ** (4.179 + 6e-6 * np.arange(n)), rtol=1e-13)
    assert spec.meta["format"] == "apogee" and spec.meta["medium_in_file"] == "vacuum"
    assert np.all(spec.flux[spec.mask] == 1.0)  # row 0
    assert spec.mask.sum() == n - 100 and not spec.mask[3000:3100].any()


def test_csv_and_ecsv_with_units(tmp_path):
    wl, flux, sigma = toy()
    path = tmp_path / "s.csv"
    Table({"Wavelength": wl, "Flux": flux, "Error": sigma}).write(path, format="ascii.csv")
    spec = read_spectrum(path)
    np.testing.assert_allclose(spec.wavelength, wl)
    np.testing.assert_allclose(spec.sigma, sigma)
    t = Table({"wavelength": wl / 1e4 * u.um, "flux": flux, "sigma": sigma})
    path2 = tmp_path / "s.ecsv"
    t.write(path2, format="ascii.ecsv")
    np.testing.assert_allclose(read_spectrum(path2).wavelength, wl, rtol=1e-13)
    # a plain file in nm needs the unit; then it is converted
    path3 = tmp_path / "nm.csv"
    Table({"wavelength": wl / 10.0, "flux": flux, "error": sigma}).write(path3, format="ascii.csv")
    with pytest.raises(SpectrumError, match="wavelength_unit='nm'"):
        read_spectrum(path3)
    np.testing.assert_allclose(read_spectrum(path3, wavelength_unit="nm").wavelength, wl, rtol=1e-13)


def csv(tmp_path, wl, flux, sigma=None, name="bad.csv"):
    cols = {"wavelength": wl, "flux": flux}
    if sigma is not None:
        cols["error"] = sigma
    path = tmp_path / name
    Table(cols).write(path, format="ascii.csv")
    return path


def test_nan_flux_is_masked_with_a_count(tmp_path):
    wl, flux, sigma = toy()
    flux[[3, 50, 51]] = np.nan
    with pytest.warns(SpectrumWarning, match="3 pixel\\(s\\) with NaN/inf flux were masked"):
        spec = read_spectrum(csv(tmp_path, wl, flux, sigma))
    assert spec.mask.sum() == wl.size - 3 and np.all(np.isfinite(spec.flux))


def test_missing_or_bad_uncertainties(tmp_path):
    wl, flux, sigma = toy()
    with pytest.raises(SpectrumError, match="no uncertainty column.*default_snr"):
        read_spectrum(csv(tmp_path, wl, flux))
    with pytest.warns(SpectrumWarning, match="assumed σ = \\|flux\\| / 50"):
        spec = read_spectrum(csv(tmp_path, wl, flux, name="nosig.csv"), default_snr=50.0)
    np.testing.assert_allclose(spec.sigma, flux / 50.0)
    sigma[7] = -1.0
    with pytest.raises(SpectrumError, match="non-positive or non-finite uncertainties \\(first: pixel 7"):
        read_spectrum(csv(tmp_path, wl, flux, sigma, name="neg.csv"))


def test_unsorted_duplicated_and_descending_wavelengths(tmp_path):
    wl, flux, sigma = toy()
    bad = wl.copy()
    bad[[40, 41]] = bad[[41, 40]]
    with pytest.raises(SpectrumError, match="unsorted or duplicated at pixel 41"):
        read_spectrum(csv(tmp_path, bad, flux, sigma))
    dup = wl.copy()
    dup[90] = dup[89]
    with pytest.raises(SpectrumError, match="pixel 90"):
        read_spectrum(csv(tmp_path, dup, flux, sigma, name="dup.csv"))
    with pytest.warns(SpectrumWarning, match="descending"):
        spec = read_spectrum(csv(tmp_path, wl[::-1], flux[::-1], sigma[::-1], name="desc.csv"))
    np.testing.assert_array_equal(spec.wavelength, wl)
    np.testing.assert_array_equal(spec.flux, flux)


def test_fully_masked_and_unreadable_files(tmp_path):
    wl, flux, sigma = toy()
    with pytest.raises(SpectrumError, match="every pixel is masked"), pytest.warns(SpectrumWarning):
        read_spectrum(csv(tmp_path, wl, np.full(wl.size, np.nan), sigma))
    with pytest.raises(SpectrumError, match="does not exist"):
        read_spectrum(tmp_path / "nope.fits")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file")
    with pytest.raises(SpectrumError, match="FITS"):
        read_spectrum(junk)
    Table({"wavelength": wl, "counts_x": flux, "error": sigma}).write(tmp_path / "nf.csv", format="ascii.csv")
    with pytest.raises(SpectrumError, match="no flux column.*flux_col="):
        read_spectrum(tmp_path / "nf.csv")
    np.testing.assert_array_equal(read_spectrum(tmp_path / "nf.csv", flux_col="COUNTS_X").flux, flux)


def test_spectrum_validation_messages():
    wl, flux, sigma = toy()
    with pytest.raises(SpectrumError, match="shape"):
        Spectrum(wl, flux[:-1], sigma)
    with pytest.raises(SpectrumError, match="flux\\[4\\] is not finite"):
        Spectrum(wl, np.where(np.arange(wl.size) == 4, np.nan, flux), sigma)
    with pytest.raises(SpectrumError, match="contiguous"):
        Spectrum(wl, flux, sigma, segments=np.arange(wl.size) % 2)


def test_crop_to_model():
    space = LabelSpace.from_bounds({"teff": (4000.0, 7000.0)})
    model = AnalyticLineModel(space, (6510.0, 6600.0))
    wl, flux, sigma = toy()  # 6500–6540 Å
    with pytest.warns(SpectrumWarning, match="dropped"):
        cropped = crop_to_model(Spectrum(wl, flux, sigma), model)
    assert cropped.wavelength.min() >= 6510.0 and cropped.n_pix == int(np.sum(wl >= 6510.0))
    inside = Spectrum(*toy(w0=6520.0))
    assert crop_to_model(inside, model) is inside
    near_edge = Spectrum(*toy(w0=6511.0))
    assert crop_to_model(near_edge, model) is near_edge
    with pytest.warns(SpectrumWarning, match="dropped"):
        shrunk = crop_to_model(near_edge, model, margin_kms=300.0)
    assert shrunk.wavelength.min() >= 6510.0 * (1 + 300.0 / 299792.458)
    with pytest.raises(WavelengthError, match="outside the model's range"):
        crop_to_model(Spectrum(*toy(w0=7000.0)), model)
    grid = log_uniform_grid(6520.0, 6560.0, 20000.0)
    assert crop_to_model(Spectrum(grid, np.ones(grid.size), np.ones(grid.size)), model).n_pix == grid.size


def galah_hdul(n=400, crval=6478.0, cdelt=0.046, rel=0.02, norm_start=0, identity="HERMES", crpix=1.0):
    """A GALAH DR3-like per-CCD file: 5 1-D images, each with a linear air-Å WCS; HDU4 may start later (CCD 4)."""
    wl = crval + cdelt * np.arange(n)
    counts = 1000.0 * (1.0 - 0.5 * np.exp(-0.5 * ((wl - wl[n // 2]) / 0.2) ** 2))
    norm = counts[norm_start:] / 1000.0 * 1.01
    norm[[7, 100]] = np.nan
    rel_err = np.full(n, rel)
    rel_err[[50, 60]] = (np.nan, 0.0)  # unusable errors on finite fluxes

    def wcs(start, extname):
        return fits.Header({"CRVAL1": crval + cdelt * start, "CDELT1": cdelt, "CRPIX1": crpix, "EXTNAME": extname})

    primary = fits.PrimaryHDU(counts, header=wcs(0, "PRIMARY"))
    if identity == "HERMES":
        primary.header["INSTRUME"] = "HERMES-2dF"
    elif identity == "AAT":
        primary.header["TELESCOP"] = "AAT"
    primary.header["RVCOM"] = 12.5
    hdul = fits.HDUList(
        [
            primary,
            fits.ImageHDU(rel_err, header=wcs(0, "input_sigma")),
            fits.ImageHDU(counts + 5.0, header=wcs(0, "no_sky_subspectrum")),
            fits.ImageHDU(rel_err, header=wcs(0, "no_sky_sigma")),
            fits.ImageHDU(norm, header=wcs(norm_start, "normalised spectra" if identity == "extname" else "spectrum")),
        ]
    )
    return hdul, wl, counts, norm, rel_err


def test_galah_dr3_layout_is_detected_and_reads_normalised_flux_in_vacuum(tmp_path):
    hdul, wl_air, _, norm, rel = galah_hdul()
    path = tmp_path / "1311160005010133.fits"
    hdul.writeto(path)
    with pytest.warns(SpectrumWarning) as record:
        spec = read_spectrum(path)
    messages = [str(w.message) for w in record]
    assert any("2 pixel(s) with NaN/inf flux were masked" in m for m in messages), messages
    assert any(m.startswith("2 GALAH pixel(s)") for m in messages), messages
    assert spec.meta["format"] == "galah-dr3" and spec.meta["hdu"] == 4 and spec.meta["ccd"] == 3
    assert spec.meta["sobject_id"] == "131116000501013" and spec.meta["medium_in_file"] == "air"
    assert spec.meta["header"]["RVCOM"] == 12.5
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(wl_air), rtol=0, atol=1e-6)
    assert spec.wavelength[0] - wl_air[0] == pytest.approx(1.79, abs=0.02)  # air → vacuum at 6478 Å
    good = np.isfinite(norm)
    np.testing.assert_array_equal(spec.flux[good], norm[good])  # HDU4, not the counts of HDU0
    expected_mask = good.copy()
    expected_mask[[50, 60]] = False
    np.testing.assert_array_equal(spec.mask, expected_mask)
    np.testing.assert_allclose(spec.sigma[spec.mask], (rel * norm)[spec.mask], rtol=1e-15)
    # the unnormalised flux on request: σ = relative error × counts
    with pytest.warns(SpectrumWarning, match="2 GALAH pixel"):
        raw = read_spectrum(path, hdu=0)
    assert raw.meta["hdu"] == 0 and raw.flux[0] == pytest.approx(1000.0)
    np.testing.assert_allclose(raw.sigma[raw.mask], 0.02 * raw.flux[raw.mask], rtol=1e-12)


@pytest.mark.parametrize("identity", ["HERMES", "AAT", "extname"])
def test_galah_detection_and_ccd4_shorter_normalised_hdu(tmp_path, identity):
    # CCD 4: HDU4 covers only the red part of HDU0's grid; CRPIX1 = 0 means pixel 1 as in GALAH's own tools
    hdul, wl_air, _, norm, rel = galah_hdul(crval=7585.0, cdelt=0.074, norm_start=30, identity=identity, crpix=0.0)
    rel[30:] = np.linspace(0.01, 0.05, rel.size - 30)
    hdul[1].data = rel
    path = tmp_path / f"star_{identity}.fits"
    hdul.writeto(path)
    with pytest.warns(SpectrumWarning, match="2 pixel\\(s\\) with NaN/inf flux"):
        spec = read_spectrum(path)
    assert spec.meta["format"] == "galah-dr3" and "ccd" not in spec.meta  # no CCD in this file name
    assert spec.n_pix == norm.size and not any("interpolated" in note for note in spec.meta["notes"])  # sliced exactly
    np.testing.assert_allclose(spec.wavelength, air_to_vacuum(wl_air[30:]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(spec.sigma[spec.mask], (rel[30:] * norm)[spec.mask], rtol=1e-15)


def test_galah_format_on_other_files_is_a_clear_error_and_plain_files_are_not_galah(tmp_path):
    n = 100
    path = tmp_path / "img.fits"
    hdr = fits.Header({"CRVAL1": 6500.0, "CDELT1": 0.05, "CRPIX1": 1.0})
    fits.HDUList([fits.PrimaryHDU(np.ones(n), header=hdr), fits.ImageHDU(np.full(n, 0.01), name="ERROR")]).writeto(path)
    with pytest.raises(SpectrumError, match="not a GALAH DR3 spectrum: .*this file has 2.*format='fits-image'"):
        read_spectrum(path, format="galah")
    assert read_spectrum(path).meta["format"] == "fits-image"
    # five anonymous images without a HERMES/AAT header or a 'normalised' HDU4 are read as a plain image
    hdul, *_ = galah_hdul(identity=None)
    hdul.writeto(tmp_path / "five.fits")
    with pytest.warns(SpectrumWarning):
        assert read_spectrum(tmp_path / "five.fits", default_snr=50.0).meta["format"] == "fits-image"
    with pytest.raises(SpectrumError, match="HDU4 \\(normalised, default\\) or HDU0"):
        read_spectrum(tmp_path / "five.fits", format="galah", hdu=2)
