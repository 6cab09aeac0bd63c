"""`stellarinf grid` and `stellarinf synth`: small runs, resume after an interruption, extension."""

import json

import numpy as np
import pytest
from astropy.table import Table

from stellarinf.commands import grid as grid_cmd
from stellarinf.io.grid import GridWriter, read_grid

OPTS = dict(
    window="galah-red", design="sobol", seed=3, fidelity="simple", batch_size=4, elements=("Ca", "Li"), progress=False
)


def test_grid_resumes_after_interruption_and_extends(tmp_path, monkeypatch):
    ref = grid_cmd.generate_grid(tmp_path / "ref.h5", n=12, **OPTS)
    ref_grid = read_grid(ref)
    assert ref_grid.flux.shape == (12, ref_grid.wavelength.size) and np.all(ref_grid.flux <= 1.0 + 1e-6)
    meta = ref_grid.metadata
    assert meta["generator"] == "stellarinf.synth" and meta["fidelity"] == "simple" and meta["seed"] == 3
    assert meta["resolution"] == 28000.0 and "moogatom" in meta["line_list"]
    assert ref_grid.label_space.names == ("teff", "logg", "feh", "vmic", "ca_fe", "li_fe")

    # Kill after the first batch: a KeyboardInterrupt escapes mid-generation.
    calls = {"n": 0}
    original = GridWriter.write_rows

    def dying(self, rows, flux, continuum=None):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self, rows, flux, continuum)

    out = tmp_path / "g.h5"
    monkeypatch.setattr(GridWriter, "write_rows", dying)
    with pytest.raises(KeyboardInterrupt):
        grid_cmd.generate_grid(out, n=12, **OPTS)
    assert not out.exists() and len(list((tmp_path / "g.h5.parts").glob("rows_*.h5"))) == 1
    monkeypatch.setattr(GridWriter, "write_rows", original)

    written = []
    monkeypatch.setattr(
        GridWriter, "write_rows", lambda self, r, f, c=None: (written.append(int(r[0])), original(self, r, f, c))[1]
    )
    grid_cmd.generate_grid(out, n=12, **OPTS)  # resumes: only the two missing batches
    assert written == [4, 8]
    got = read_grid(out)
    np.testing.assert_array_equal(got.labels, ref_grid.labels)
    np.testing.assert_allclose(got.flux, ref_grid.flux, atol=1e-6)

    written.clear()
    grid_cmd.generate_grid(out, n=16, **OPTS)  # same seed, larger n: extends
    assert written == [12]
    assert read_grid(out).labels.shape == (16, 6)


def test_synth_cli_writes_fits_table(tmp_path):
    from stellarinf.cli import main

    path = tmp_path / "sun.fits"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "synth",
                "--teff",
                "5772",
                "--logg",
                "4.44",
                "--feh",
                "0",
                "--abund",
                "Ca=0.1",
                "--fidelity",
                "simple",
                "--vsini",
                "2",
                "-o",
                str(path),
            ]
        )
    assert exc.value.code == 0
    t = Table.read(path)
    assert t.colnames == ["wavelength", "flux", "continuum"]
    assert str(t["wavelength"].unit) == "Angstrom"
    assert 6480 <= t["wavelength"][0] < 6481 and np.all(np.diff(np.log(t["wavelength"])) > 0)
    assert 0.3 < np.min(t["flux"]) < 0.99 and np.max(t["flux"]) <= 1.0 + 1e-6
    assert t.meta["MEDIUM"] == "vacuum"


def test_synth_cli_writes_all_four_galah_arms_as_one_multi_arm_file(tmp_path):
    from stellarinf.cli import main
    from stellarinf.instruments import window_set
    from stellarinf.io.spectrum import read_spectrum

    path = tmp_path / "sun_galah.fits"
    with pytest.raises(SystemExit) as exc:
        main(
            ["synth", "--teff", "5772", "--logg", "4.44", "--feh", "0", "--fidelity", "simple"]
            + ["--window", "galah", "--resolution", "22000", "-o", str(path)]
        )
    assert exc.value.code == 0
    spec = read_spectrum(path, default_snr=100.0)  # a noiseless model: say what S/N to assume
    windows = window_set("galah")
    assert list(spec.segment_ids) == [0, 1, 2, 3]
    for k, win in enumerate(windows):
        wl = spec.wavelength[spec.segments == k]
        # each arm on its own model window's grid, at the resolving power asked for
        assert win.wmin <= wl[0] < win.wmin + 0.2 and win.wmax - 0.2 < wl[-1] <= win.wmax, (win, wl[[0, -1]])
        assert spec.resolution_of(k) == 22000.0
        # lines in every arm: the line list covers them (the simple fidelity has no hydrogen lines)
        assert 0.2 < spec.flux[spec.segments == k].min() < 0.95, win.name


def test_grid_with_alpha_label_and_its_box(tmp_path):
    from stellarinf.errors import LabelError

    path = grid_cmd.generate_grid(tmp_path / "a.h5", n=4, alpha=True, label_box=("alpha_fe=0:0.4",), **OPTS)
    got = read_grid(path)
    assert got.label_space.names == ("teff", "logg", "feh", "vmic", "alpha_fe", "ca_fe", "li_fe")
    a = got.labels[:, 4]
    assert got.label_space["alpha_fe"].lower == 0.0 and got.label_space["alpha_fe"].upper == 0.4
    assert np.all((a >= 0.0) & (a <= 0.4)) and np.ptp(a) > 0.1
    with pytest.raises(LabelError, match="--alpha"):
        grid_cmd.parse_label_box(("alpha_fe=0:0.4",), ("Ca",))


def test_grid_refuses_to_extend_with_other_physics(tmp_path):
    from stellarinf.io.grid import GridFileError

    path = grid_cmd.generate_grid(tmp_path / "s.h5", n=4, **OPTS)
    got = read_grid(path)
    for key, value in (("fidelity", "realistic"), ("synth_settings", "extended"), ("loggf", "laboratory")):
        meta = {**got.metadata, key: value}
        with pytest.raises(GridFileError, match=f"{key}="):
            GridWriter(path, got.label_space, got.wavelength, got.labels, meta, with_continuum=True, batch_size=4)


def test_files_from_before_a_physics_key_existed_are_read_as_what_made_them(tmp_path):
    """A grid written before the presets were renamed says synth_settings="default" (the 45-depth "standard"
    preset) and has no "hydrogen" key (its Hα at the Rydberg wavelength): it extends with exactly that physics."""
    import h5py

    from stellarinf.io.grid import GridFileError

    path = grid_cmd.generate_grid(tmp_path / "old.h5", n=4, **OPTS)
    got = read_grid(path)
    old = {k: v for k, v in got.metadata.items() if k != "hydrogen"}
    with h5py.File(path, "r+") as f:  # as an eighteenth-session file: no hydrogen key, the old preset name
        f.attrs["metadata"] = json.dumps({**old, "synth_settings": "default"})
    same = {**old, "synth_settings": "standard", "hydrogen": "Rydberg Hα"}
    GridWriter(path, got.label_space, got.wavelength, got.labels, same, with_continuum=True, batch_size=4)
    for key, value in (("synth_settings", "extended"), ("hydrogen", "NIST Hα, Hβ")):
        with pytest.raises(GridFileError, match=f"{key}="):
            meta = {**same, key: value}
            GridWriter(path, got.label_space, got.wavelength, got.labels, meta, with_continuum=True, batch_size=4)


def test_oversampled_grid_is_the_plain_grid_plus_the_half_pixel_points(tmp_path):
    """--oversample 2 stores every half-pixel point: its even columns are, bit for bit, the grid at the instrument's
    pixels; the odd ones lie between (each within its neighbours' range where the flux is monotonic); resuming or
    extending it with another sampling is refused by name."""
    from stellarinf.io.grid import GridFileError

    plain = read_grid(grid_cmd.generate_grid(tmp_path / "x1.h5", n=4, **OPTS))
    fine_path = grid_cmd.generate_grid(tmp_path / "x2.h5", n=4, oversample=2, **OPTS)
    fine = read_grid(fine_path)
    assert fine.oversample == 2 and plain.oversample == 1 and fine.metadata["oversample"] == 2
    assert fine.n_pixels == 2 * plain.n_pixels - 1
    inst = fine.instrument_pixels()
    assert inst.oversample == 1
    np.testing.assert_array_equal(inst.wavelength, plain.wavelength)
    np.testing.assert_array_equal(inst.flux, plain.flux)
    np.testing.assert_array_equal(inst.continuum, plain.continuum)
    # the odd columns are the same smooth spectrum between the pixels: band-limited (Lanczos) interpolation of the
    # even ones finds them to its aliasing error at 2.5 pixels per FWHM, linear interpolation does not
    from stellarinf.emulators.interpolation import lanczos_interpolate

    mid = fine.flux[:, 1::2]
    lanczos = np.stack(
        [np.asarray(lanczos_interpolate(fine.wavelength[1::2], plain.wavelength, f)) for f in plain.flux]
    )
    linear = 0.5 * (plain.flux[:, :-1] + plain.flux[:, 1:])
    err_lanczos, err_linear = np.max(np.abs(lanczos - mid)), np.max(np.abs(linear - mid))
    assert err_lanczos < 0.01 and err_lanczos < 0.3 * err_linear, (err_lanczos, err_linear)
    with pytest.raises(GridFileError, match="wavelength grid"):
        grid_cmd.generate_grid(fine_path, n=8, **OPTS)  # extending at the instrument's pixels
    (tmp_path / "x3.h5.parts").mkdir()
    GridWriter(
        tmp_path / "x3.h5", fine.label_space, fine.wavelength, fine.labels, fine.metadata, with_continuum=True
    )  # an unfinished oversampled generation ...
    with pytest.raises(GridFileError, match="oversample=2"):  # ... is not resumed at another sampling
        GridWriter(
            tmp_path / "x3.h5", plain.label_space, plain.wavelength, plain.labels, plain.metadata, with_continuum=True
        )
