"""Grid files: round trips, atomic writes, resumable/appendable generation, clear errors."""

import h5py
import numpy as np
import pytest

from stellarinf.design import sample_labels, unit_design
from stellarinf.errors import GridFileError, LabelError, ShapeError
from stellarinf.io.grid import GridFile, GridWriter, SpectralGrid, read_grid, split_indices, write_grid
from stellarinf.labels import LabelSpace

SPACE = LabelSpace.from_bounds({"teff": (4000, 7000), "logg": (1, 5), "feh": (-2, 0.5)})
WL = np.linspace(6500, 6510, 40)


def fake_flux(labels):
    # deterministic "spectrum" of the labels so lost/duplicated rows would show
    x = SPACE.scale(labels)
    return 1 - 0.5 * np.exp(-((WL[None] - 6505 - 3 * x[:, :1]) ** 2)) * (0.5 + x[:, 1:2])


def make_grid(n=20, seed=0, continuum=True):
    labels = sample_labels(SPACE, n, "sobol", seed)
    flux = fake_flux(labels)
    cont = np.full_like(flux, 2.0) if continuum else None
    return SpectralGrid(SPACE, labels, WL, flux, cont, {"generator": "test", "seed": seed})


def test_round_trip(tmp_path):
    g = make_grid()
    write_grid(tmp_path / "g.h5", g)
    back = read_grid(tmp_path / "g.h5")
    np.testing.assert_array_equal(back.labels, g.labels)
    np.testing.assert_array_equal(back.flux, g.flux)
    np.testing.assert_array_equal(back.continuum, g.continuum)
    np.testing.assert_array_equal(back.wavelength, g.wavelength)
    assert back.label_space == SPACE and back.metadata["seed"] == 0
    with h5py.File(tmp_path / "g.h5") as fh:
        assert list(fh["labels"].attrs["label_names"]) == [b"teff", b"logg", b"feh"] or list(
            fh["labels"].attrs["label_names"]
        ) == ["teff", "logg", "feh"]
        assert fh["flux"].chunks is not None


def test_lazy_rows_and_batches(tmp_path):
    g = make_grid(50)
    g.save(tmp_path / "g.h5")
    with GridFile(tmp_path / "g.h5") as gf:
        lab, flux, _ = gf.read_rows([7, 3, 11])
        np.testing.assert_array_equal(flux, g.flux[[7, 3, 11]])
        np.testing.assert_array_equal(lab, g.labels[[7, 3, 11]])
        rows = sum(b[1].shape[0] for b in gf.iter_batches(16))
    assert rows == 50


def test_interrupted_write_keeps_previous_content(tmp_path, monkeypatch):
    path = tmp_path / "g.h5"
    make_grid(10).save(path)
    before = read_grid(path)

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    bigger = make_grid(30)
    monkeypatch.setattr(h5py.Dataset, "__setitem__", boom)
    with pytest.raises(KeyboardInterrupt):
        bigger.save(path)
    monkeypatch.undo()
    after = read_grid(path)
    np.testing.assert_array_equal(after.flux, before.flux)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def run_writer(path, n, seed=0, stop_after=None, batch=8):
    labels = sample_labels(SPACE, n, "sobol", seed)
    w = GridWriter(path, SPACE, WL, labels, {"generator": "test", "seed": seed}, with_continuum=True, batch_size=batch)
    done = 0
    for start, stop in w.pending():
        if stop_after is not None and done >= stop_after:
            return w  # simulate a kill
        f = fake_flux(labels[start:stop])
        w.write_batch(start, f, np.full_like(f, 2.0))
        done += 1
    w.finalize()
    w.batches_written = done
    return w


def test_resume_after_kill_no_lost_or_duplicated_rows(tmp_path):
    path = tmp_path / "g.h5"
    w = run_writer(path, 40, stop_after=2)
    assert not path.exists() and len(w.finished_parts()) == 2
    w2 = run_writer(path, 40)
    assert w2.batches_written == 3 and len(w2.pending()) == 0  # only the missing batches were redone
    g = read_grid(path)
    ref = sample_labels(SPACE, 40, "sobol", 0)
    np.testing.assert_array_equal(g.labels, ref)
    np.testing.assert_allclose(g.flux, fake_flux(ref), rtol=1e-6)
    assert not (tmp_path / "g.h5.parts").exists()


def test_batches_of_any_rows_resume_and_merge_with_contiguous_parts(tmp_path):
    # rows computed in another order (e.g. sorted by Teff) land in their own rows of the file; a kill loses nothing
    path = tmp_path / "g.h5"
    labels = sample_labels(SPACE, 40, "sobol", 0)
    w = GridWriter(path, SPACE, WL, labels, {"generator": "test"}, with_continuum=True, batch_size=8)
    w.write_batch(0, fake_flux(labels[:8]), np.full((8, WL.size), 2.0))  # one old-style contiguous part
    order = np.argsort(labels[:, 0], kind="stable")
    batches = w.pending_rows(order)
    assert sum(b.size for b in batches) == 32 and not np.isin(np.arange(8), np.concatenate(batches)).any()
    assert all(np.all(np.diff(b) > 0) for b in batches)
    for a, b in zip(batches[:-1], batches[1:]):  # similar stars together: batches follow the order
        assert labels[a, 0].max() <= labels[b, 0].min()
    first = batches[0]
    w.write_rows(first, fake_flux(labels[first]), np.full((first.size, WL.size), 2.0))  # then a kill
    w2 = GridWriter(path, SPACE, WL, labels, {"generator": "test"}, with_continuum=True, batch_size=8)
    rest = w2.pending_rows(order)
    assert sum(b.size for b in rest) == 24 and not np.isin(first, np.concatenate(rest)).any()
    for b in rest:
        w2.write_rows(b, fake_flux(labels[b]), np.full((b.size, WL.size), 2.0))
    assert not w2.pending() and not w2.pending_rows()
    w2.finalize()
    g = read_grid(path)
    np.testing.assert_array_equal(g.labels, labels)
    np.testing.assert_allclose(g.flux, fake_flux(labels), rtol=1e-6)
    with pytest.raises(ShapeError, match="increasing"):
        w2.write_rows(np.array([3, 1]), fake_flux(labels[[3, 1]]), np.full((2, WL.size), 2.0))


def test_append_extends_sobol_prefix(tmp_path):
    path = tmp_path / "g.h5"
    run_writer(path, 16)
    assert run_writer(path, 48).batches_written == 4  # rows 16..47 only
    g = read_grid(path)
    ref = sample_labels(SPACE, 48, "sobol", 0)
    np.testing.assert_array_equal(g.labels, ref)
    np.testing.assert_allclose(g.flux, fake_flux(ref), rtol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path):
    path = tmp_path / "g.h5"
    run_writer(path, 40, stop_after=1)
    with pytest.raises(GridFileError, match="different settings"):
        run_writer(path, 40, seed=5)
    run_writer(tmp_path / "h.h5", 16)
    with pytest.raises(GridFileError, match="not the first rows"):
        run_writer(tmp_path / "h.h5", 32, seed=3)


def test_bad_inputs_give_clear_errors(tmp_path):
    g = make_grid(5)
    with pytest.raises(ShapeError, match="flux must have shape"):
        SpectralGrid(SPACE, g.labels, WL, g.flux[:, :-1])
    with pytest.raises(ShapeError, match="labels must have shape"):
        SpectralGrid(SPACE, g.labels[:, :2], WL, g.flux)
    bad = g.flux.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ShapeError, match="NaN"):
        SpectralGrid(SPACE, g.labels, WL, bad)
    with pytest.raises(ShapeError, match="strictly increasing"):
        SpectralGrid(SPACE, g.labels, WL[::-1], g.flux)
    with pytest.raises(LabelError, match="outside the allowed range"):
        GridWriter(tmp_path / "x.h5", SPACE, WL, [[9000, 4, 0]], {})
    with pytest.raises(GridFileError, match="does not exist"):
        GridFile(tmp_path / "missing.h5")


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "g.h5"
    make_grid(30).save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(GridFileError, match="truncated|corrupt|lacks"):
        read_grid(tmp_path / "trunc.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as fh:
        fh["x"] = [1]
    with pytest.raises(GridFileError, match="not a stellarinf grid"):
        read_grid(tmp_path / "foreign.h5")


def test_split_is_reproducible_and_disjoint():
    a = split_indices(1000, (0.8, 0.1, 0.1), seed=3)
    b = split_indices(1000, (0.8, 0.1, 0.1), seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    allidx = np.concatenate(list(a.values()))
    assert sorted(allidx.tolist()) == list(range(1000))
    assert len(a["train"]) == 800 and len(a["validation"]) == 100
    assert not np.array_equal(split_indices(1000, seed=4)["test"], a["test"])


@pytest.mark.parametrize("kind", ["uniform", "latin", "sobol"])
def test_designs_cover_the_box(kind):
    u = unit_design(kind, 256, 3, seed=1)
    assert u.shape == (256, 3) and u.min() >= 0 and u.max() < 1
    np.testing.assert_array_equal(u, unit_design(kind, 256, 3, seed=1))
    if kind != "uniform":  # stratified designs: every 1/16 bin of each axis is populated equally
        counts = np.stack([np.histogram(u[:, j], bins=16, range=(0, 1))[0] for j in range(3)])
        assert counts.min() == counts.max() == 16
    labels = sample_labels(SPACE, 64, kind, 0)
    SPACE.validate(labels)


def _gpu_grids():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_grids.py"
    spec = importlib.util.spec_from_file_location("gpu_grids", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("continuum", [True, False])
def test_packed_grid_for_a_device_call_round_trips(tmp_path, continuum):
    """benchmarks/gpu_grids.py: a packed grid unpacks into an ordinary grid file, flux to within half the
    quantisation step (exactly: the differences along wavelength are integers), the continuum to within linear interpolation's bound in log between knots,
    labels and metadata exactly."""
    gg = _gpu_grids()
    g = make_grid(n=37, continuum=continuum)
    if continuum:  # smooth and varying, as a real continuum: exp of a quadratic in wavelength
        x = (WL - WL.mean()) / np.ptp(WL)
        g.continuum = (1e6 * np.exp(0.8 * x - 0.3 * x**2) * (1 + g.labels[:, :1] / 1e4)).astype(np.float32)
    write_grid(tmp_path / "g.h5", g)
    gg.pack(tmp_path / "g.h5", tmp_path / "p.h5", rows=30)
    gg.unpack(tmp_path / "p.h5", tmp_path / "u.h5")
    back = read_grid(tmp_path / "u.h5")
    assert len(back) == 30 and back.label_space == SPACE and back.metadata == read_grid(tmp_path / "g.h5").metadata
    np.testing.assert_array_equal(back.labels, g.labels[:30])
    np.testing.assert_array_equal(back.wavelength, g.wavelength)
    step = gg.FLUX_STEP
    assert np.abs(back.flux - g.flux[:30]).max() <= 0.5 * step + 1e-7
    assert np.abs(back.flux - g.flux[:30]).max() > 0  # it really was quantised (the test would see a no-op)
    # a step so fine that the coded differences overflow 16 bits: stored as 32-bit integers, still exact to step/2
    gg.pack(tmp_path / "g.h5", tmp_path / "fine.h5", step=1e-6, continuum=False)
    gg.unpack(tmp_path / "fine.h5", tmp_path / "fine_u.h5")
    with h5py.File(tmp_path / "fine.h5") as f:
        assert f["flux_dz"].attrs["packed_dtype"] == "uint32"
    fine = read_grid(tmp_path / "fine_u.h5")
    assert fine.continuum is None and np.abs(fine.flux - g.flux).max() <= 0.5e-6 + 2e-7
    # principal components + the quantised residual: the residual takes every rounding, so still within step/2
    gg.pack(tmp_path / "g.h5", tmp_path / "pca.h5", step=2e-4, continuum=False, pca=4)
    gg.unpack(tmp_path / "pca.h5", tmp_path / "pca_u.h5")
    with h5py.File(tmp_path / "pca.h5") as f:
        assert f["pca_basis"].shape == (4, WL.size) and "flux_dz" not in f
    pc = read_grid(tmp_path / "pca_u.h5")
    err = np.abs(pc.flux - g.flux)
    assert err.max() <= 1e-4 + 2e-7 and err.max() > 0
    np.testing.assert_array_equal(pc.labels, g.labels)
    if continuum:
        # log c = 0.8 x - 0.3 x² (+ const): linear interpolation between knots h apart errs by at most
        # |(log c)''| h² / 8 = 0.6 h² / 8, h in units of x (the whole window spans 1, pixels 1/39 apart)
        h = gg.CONT_STEP / (WL.size - 1)
        err = np.abs(np.log(back.continuum / g.continuum[:30]))
        assert err.max() <= 0.6 * h**2 / 8 * 1.001 + 1e-6
        assert err[:, :: gg.CONT_STEP].max() < 1e-6  # exact at the knots
    else:
        assert back.continuum is None
    with pytest.raises(SystemExit, match="not a packed grid"):
        gg.unpack(tmp_path / "g.h5", tmp_path / "x.h5")


def test_grids_concatenate_into_one_with_the_union_box_and_refuse_what_cannot_train_together():
    """A broad design and a denser grid of its cool corner: their rows in order, the broad box (the union), each part
    recorded; grids of other labels, pixels or physics are refused by name."""
    from stellarinf.io.grid import concatenate_grids

    broad = make_grid(20, seed=0)
    corner_space = LabelSpace.from_bounds({"teff": (4000, 4800), "logg": (1, 5), "feh": (-2, 0.5)})
    corner_labels = sample_labels(corner_space, 12, "sobol", 1)
    corner = SpectralGrid(
        corner_space, corner_labels, WL, fake_flux(corner_labels), np.full((12, WL.size), 2.0), {"seed": 1}
    )
    both = concatenate_grids([broad, corner], sources=["broad.h5", "corner.h5"])
    assert len(both) == 32 and both.label_space == SPACE  # the corner lies inside: the union is the broad box
    np.testing.assert_array_equal(both.labels, np.concatenate([broad.labels, corner.labels]))
    np.testing.assert_array_equal(both.flux[20:], corner.flux)
    np.testing.assert_array_equal(both.continuum[:20], broad.continuum)
    parts = both.metadata["concatenated"]
    assert [(p["source"], p["rows"], p["seed"]) for p in parts] == [("broad.h5", 20, 0), ("corner.h5", 12, 1)]
    assert parts[1]["box"]["teff"] == [4000.0, 4800.0] and both.metadata["path"] == "broad.h5 + corner.h5"
    # a box beyond the first grid's widens the union
    hot = LabelSpace.from_bounds({"teff": (6000, 7500), "logg": (1, 5), "feh": (-2, 0.5)})
    hot_labels = sample_labels(hot, 4, "sobol", 2)
    wide = concatenate_grids(
        [broad, SpectralGrid(hot, hot_labels, WL, fake_flux(hot_labels) * 0 + 1, np.ones((4, 40)))]
    )
    assert wide.label_space.upper[0] == 7500.0 and wide.label_space.lower[0] == 4000.0
    other_labels = LabelSpace.from_bounds({"teff": (4000, 7000), "logg": (1, 5), "mg_fe": (-2, 0.5)})
    with pytest.raises(GridFileError, match="same labels"):
        concatenate_grids([broad, SpectralGrid(other_labels, broad.labels, WL, broad.flux, broad.continuum)])
    with pytest.raises(GridFileError, match="different wavelength grids"):
        concatenate_grids([broad, SpectralGrid(SPACE, broad.labels, WL + 0.01, broad.flux, broad.continuum)])
    with pytest.raises(GridFileError, match="continuum"):
        concatenate_grids([broad, make_grid(20, seed=0, continuum=False)])
    tio = SpectralGrid(SPACE, broad.labels, WL, broad.flux, broad.continuum, {"molecules": "on+tio"})
    with pytest.raises(GridFileError, match=r"molecules='on\+tio'.*'off'"):  # the first has none: atoms only
        concatenate_grids([broad, tio], sources=["broad.h5", "tio.h5"])
