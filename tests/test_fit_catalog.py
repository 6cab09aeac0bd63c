"""``stellarinf fit-catalog`` / ``stellarinf.fit_catalog``: a catalogue of mock stars (plus bad files) fitted on a Dask
``LocalCluster`` the tests start and stop themselves; failures recorded per star; a rerun fits nothing; a run killed
with SIGKILL and restarted gives the uninterrupted run's catalogue; bad manifests are refused before any work.

Speed: the tiny analytic model, MAP + Laplace (``sampler="laplace"``). A worker process compiles the fit's programs
once (~50 s on a loaded 2-core machine); the module first fits one star in this process so that the workers (and
the CLI subprocesses) load them from the session's persistent compilation cache (conftest) instead (~10 s).
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from analytic_fits import CATALOG_SETTINGS
from astropy.io import fits
from astropy.table import Table

import stellarinf
from stellarinf.catalog import FLAG_BIT_NUMBERS, FLAG_BITS, SettingsMismatch
from stellarinf.catalog.assemble import read_catalogue_table, star_flags
from stellarinf.catalog.flags import bits_to_words, header_cards, words_to_bits
from stellarinf.catalog.manifest import ManifestError, StarRequest, chunks_by_size, read_catalogue
from stellarinf.catalog.worker import star_seed
from stellarinf.cli import main
from stellarinf.inference.results import FLAG_ADVICE, read_inference_data
from stellarinf.io.spectrum import write_spectrum_fits
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

REPO = Path(__file__).resolve().parents[1]
TEST_MODEL = "analytic-injected"  # resolved to the analytic model by the tests only (the CLI has no test model)
TRUTHS = {
    "a": {"teff": 5200.0, "logg": 4.4, "feh": -0.1, "rv": -12.0},
    "b": {"teff": 6100.0, "logg": 3.6, "feh": -0.8, "rv": 25.0},
    "c": {"teff": 4800.0, "logg": 2.5, "feh": 0.2, "rv": 3.0},
    "d": {"teff": 5600.0, "logg": 4.0, "feh": -0.4, "rv": -30.0},
    "e": {"teff": 5000.0, "logg": 3.0, "feh": -1.0, "rv": 10.0},
    "f": {"teff": 5900.0, "logg": 4.2, "feh": 0.0, "rv": 40.0},
    "g": {"teff": 5400.0, "logg": 3.4, "feh": -0.6, "rv": -5.0},
}
BAD = ("unreadable", "nanflux", "gone")  # not a FITS file; all flux NaN; no such file
SETTINGS = CATALOG_SETTINGS
CLI_SETTINGS = [
    "--sampler",
    "laplace",
    "--chains",
    "2",
    "--draws",
    "300",
    "--rv-max",
    "60",
    "--vsini-max",
    "20",
    "--fix",
    "vmacro=0",
    "--continuum-degree",
    "0",
    "--starts",
    "2",
    "--physics-error",
    "off",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def model():
    return analytic_setup()[0]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, model):
    """A CSV manifest (relative paths, an id column, a per-star logg prior on star a) of 7 mock stars, an unreadable
    file, an all-NaN spectrum and a missing file."""
    _, wl = analytic_setup()
    root = tmp_path_factory.mktemp("catalog")
    (root / "spectra").mkdir()
    for i, (sid, t) in enumerate(TRUTHS.items()):
        spec = make_mock(model, wl, {**t, "vsini": 5.0, "vmacro": 0.0}, snr=120, resolution=20000, seed=40 + i)
        write_spectrum_fits(root / "spectra" / f"{sid}.fits", spec)
    (root / "spectra" / "unreadable.fits").write_bytes(b"this is not a FITS file\n" * 20)
    cols = [  # a table a pipeline wrote with its flux all NaN
        fits.Column(name="wavelength", format="D", array=wl),
        fits.Column(name="flux", format="D", array=np.full_like(wl, np.nan)),
        fits.Column(name="error", format="D", array=np.full_like(wl, 0.01)),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(root / "spectra" / "nanflux.fits")
    lines = ["path,id,prior_logg"]
    for sid in [*TRUTHS, *BAD]:
        prior = "4.4+-0.1" if sid == "a" else ""
        lines.append(f"spectra/{sid}.fits,{sid},{prior}")
    path = root / "manifest.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def warm(manifest, model):
    """One fit in this process: the programs go to the session's persistent compilation cache for the workers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = {k: v for k, v in SETTINGS.items() if k != "seed"}
        return stellarinf.fit_spectrum(
            manifest.parent / "spectra" / "b.fits", emulator=model, seed=star_seed(0, "b"), **s
        )


@pytest.fixture(scope="module")
def cluster(warm):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def first(manifest, model, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("first") / "out"
    lines = []
    result = stellarinf.fit_catalog(
        manifest,
        out,
        scheduler=cluster.scheduler_address,
        emulator=model,
        emulator_name=TEST_MODEL,
        chunk_size=2,
        progress=False,
        log=lines.append,
        **SETTINGS,
    )
    return result, out, lines


def test_a_catalogue_is_fitted_end_to_end_with_failures_recorded(first, manifest, warm):
    result, out, lines = first
    table = result.table
    # a worker's fit is the library's fit: star b as fit_spectrum gives it in this process (float64, same seed)
    b = table[table["id"] == "b"][0]
    for r in warm.summary:
        for stat, col in (("p50", "p50"), ("sd", "sd"), ("p16", "p16"), ("mean", "mean")):
            assert b[f"{r['name']}_{col}"] == pytest.approx(float(r[stat]), rel=1e-9), (r["name"], stat)
    assert table["id"].tolist() == [*TRUTHS, *BAD]  # input order, one row per star
    assert table["status"].tolist() == ["ok"] * len(TRUTHS) + ["failed"] * len(BAD)
    for row in table[: len(TRUTHS)]:
        truth = TRUTHS[row["id"]]
        for label, value in truth.items():
            sd = row[f"{label}_sd"]
            assert abs(row[f"{label}_p50"] - value) < 4 * sd, (row["id"], label, row[f"{label}_p50"], value, sd)
        assert row["teff_p16"] < row["teff_p50"] < row["teff_p84"]
        assert 0.7 < row["chi2r"] < 1.3 and row["emulator"] == TEST_MODEL and row["sampler"] == "laplace"
        assert not row["flags"] & FLAG_BITS["failed"] and row["error"] == ""
        assert row["stellarinf_version"] == stellarinf.__version__ and row["seconds"] > 0
    errors = dict(zip(table["id"], table["error"]))
    assert "cannot read" in errors["unreadable"] and "FITS" in errors["unreadable"]
    assert "does not exist" in errors["gone"]
    assert "SpectrumError" in errors["nanflux"] and "mask" in errors["nanflux"].lower()
    for sid in BAD:
        row = table[table["id"] == sid][0]
        assert row["flags"] & FLAG_BITS["failed"] and "failed" in row["flag_words"] and np.isnan(row["teff_p50"])
        assert json.loads((out / "stars" / f"{sid}.failed.json").read_text())["error"] == errors[sid]
    assert sorted(p.name for p in (out / "stars").iterdir()) == sorted(
        [f"{s}.json" for s in TRUTHS] + [f"{s}.failed.json" for s in BAD]
    )
    # the per-star prior of the manifest was used and recorded: star a's logg sd is below the prior's 0.1
    rec = json.loads((out / "stars" / "a.json").read_text())
    assert rec["request"]["priors"] == ["logg=4.4+-0.1"] and table["logg_sd"][0] < 0.1
    assert {"teff_mean", "teff_sd", "teff_p16", "teff_p84", "teff_rhat", "teff_ess", "teff_flags"} <= set(
        table.colnames
    )
    assert result.counts["fitted_now"] == len(TRUTHS) and result.counts["failed_now"] == len(BAD)
    assert result.flag_counts["failed"] == len(BAD)
    assert any("Dask dashboard" in line for line in lines) and any(
        line.startswith("catalogue: 7 of 10") for line in lines
    )
    # Parquet and FITS: the same rows, the settings and the flag bits in the metadata
    pq_table = read_catalogue_table(out / "catalog.parquet")
    fits_table = read_catalogue_table(out / "catalog.fits")
    for t in (pq_table, fits_table):
        assert t["id"].tolist() == table["id"].tolist()
        assert np.array_equal(np.asarray(t["flags"]), np.asarray(table["flags"]))
        np.testing.assert_allclose(np.asarray(t["teff_p50"], float), np.asarray(table["teff_p50"], float))
        assert t.meta["settings"]["sampler"] == "laplace" and t.meta["settings"]["emulator"] == TEST_MODEL
    assert pq_table.meta["flag_bits"] == FLAG_BIT_NUMBERS
    header = Table.read(out / "catalog.fits").meta
    assert header["FLAGB00"].startswith("failed") and header["FLAGB03"].startswith("chi2")
    with warnings.catch_warnings():  # a user's plain astropy read: no warning per string column, strings whole
        warnings.simplefilter("error")
        plain = Table.read(out / "catalog.parquet")
    assert plain["error"].tolist() == pq_table["error"].tolist() and plain["id"].tolist() == table["id"].tolist()
    assert json.loads((out / "settings.json").read_text())["settings"]["draws"] == 300


def test_a_rerun_fits_nothing_new_and_gives_the_same_catalogue(first, manifest, model):
    result, out, _ = first
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "stars").iterdir()}
    lines = []
    t0 = time.perf_counter()
    again = stellarinf.fit_catalog(
        manifest, out, emulator=model, emulator_name=TEST_MODEL, progress=False, log=lines.append, **SETTINGS
    )
    assert time.perf_counter() - t0 < 30  # no cluster started: nothing to fit
    assert again.counts["fitted_now"] == 0 and again.counts["failed_now"] == 0
    assert again.counts["skipped"] == len(TRUTHS) and again.counts["not_retried"] == len(BAD)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "stars").iterdir()} == stamps
    assert not any("Dask" in line for line in lines)
    _assert_same_catalogue(again.table, result.table)


def test_retry_failed_tries_the_failed_stars_again_and_only_them(first, manifest, model, cluster):
    result, out, _ = first
    ok_stamps = {s: (out / "stars" / f"{s}.json").stat().st_mtime_ns for s in TRUTHS}
    again = stellarinf.fit_catalog(
        manifest,
        out,
        scheduler=cluster.scheduler_address,
        emulator=model,
        emulator_name=TEST_MODEL,
        retry_failed=True,
        progress=False,
        log=None,
        **SETTINGS,
    )
    assert again.counts["fitted_now"] == 0 and again.counts["failed_now"] == len(BAD)
    assert {s: (out / "stars" / f"{s}.json").stat().st_mtime_ns for s in TRUTHS} == ok_stamps
    _assert_same_catalogue(again.table, result.table)


def test_other_settings_on_a_restart_are_refused_before_any_work(first, manifest, model):
    _, out, _ = first
    stamps = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    for change, words in (({"sampler": "map"}, "sampler: 'laplace' before, 'map' now"), ({"draws": 500}, "draws")):
        with pytest.raises(SettingsMismatch, match="other settings") as exc:
            stellarinf.fit_catalog(
                manifest, out, emulator=model, emulator_name=TEST_MODEL, log=None, **{**SETTINGS, **change}
            )
        assert words in str(exc.value) and "-o" in str(exc.value)
    with pytest.raises(SettingsMismatch, match="emulator"):
        stellarinf.fit_catalog(manifest, out, emulator=model, emulator_name="another-model", log=None, **SETTINGS)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def _assert_same_catalogue(a, b):
    assert a.colnames == b.colnames and a["id"].tolist() == b["id"].tolist()
    assert len(set(a["id"])) == len(a)  # no duplicate rows
    for name in a.colnames:
        if name in ("seconds", "run_id"):  # when and in which fit a star was done
            continue
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-7, atol=0, err_msg=name)
        else:
            assert a[name].tolist() == b[name].tolist(), name


WRAPPER = """
import sys
import stellarinf.catalog.run as run
from stellarinf.validation.setups import analytic_setup


def injected(emulator, emulator_name=None):
    if emulator == {name!r}:
        return {name!r}, analytic_setup()[0]
    return real(emulator, emulator_name)


if __name__ == "__main__":
    real = run.emulator_for_workers
    run.emulator_for_workers = injected
    from stellarinf.cli import main

    main(sys.argv[1:])
""".format(name=TEST_MODEL)


def _cli_env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_a_killed_run_restarted_gives_the_uninterrupted_catalogue(first, manifest, tmp_path):
    """kill -9 of the client (its local cluster's workers go with it) once a few stars are done; the restart fits
    only the rest; the catalogue equals the uninterrupted run's (same stars, same numbers, no duplicate rows)."""
    import psutil

    result, _, _ = first
    script = tmp_path / "fit_catalog_cli.py"
    script.write_text(WRAPPER)
    out = tmp_path / "out"
    argv = [sys.executable, str(script), "fit-catalog", str(manifest), "-o", str(out), "--workers", "1"]
    argv += ["--emulator", TEST_MODEL, "--chunk-size", "1", "--quiet", *CLI_SETTINGS]
    proc = subprocess.Popen(argv, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 400
    done = []
    while time.time() < deadline and proc.poll() is None:
        done = list((out / "stars").glob("[a-g].json")) if (out / "stars").is_dir() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    children = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, f"worker processes outlived the killed client: {alive}"
    before = {p.name: p.stat().st_mtime_ns for p in (out / "stars").glob("*.json")}
    assert 2 <= len([n for n in before if not n.endswith(".failed.json")]) < len(TRUTHS), before
    restart = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=600)
    assert restart.returncode == 0, restart.stderr[-3000:]
    assert "fitted before" in restart.stderr and f"{len(TRUTHS) + len(BAD)} stars" in restart.stderr
    after = {p.name: p.stat().st_mtime_ns for p in (out / "stars").glob("*.json")}
    assert all(after[n] == t for n, t in before.items())  # what the killed run finished was kept, not redone
    _assert_same_catalogue(read_catalogue_table(out / "catalog.parquet"), result.table)


def test_bad_manifests_are_refused_before_any_work(tmp_path, model, manifest, capsys):
    spectra = manifest.parent / "spectra"
    cases = {
        "no_path.csv": ("file,id\nx.fits,x\n", "no 'path' column"),
        "dup.csv": (f"path,id\n{spectra}/a.fits,s1\n{spectra}/b.fits,s1\n", "id 's1' is also the id of row 1"),
        "prior.csv": (f"path,prior_lgg\n{spectra}/a.fits,4.4+-0.1\n", "prior_lgg"),
        "syntax.csv": (f"path,prior_logg\n{spectra}/a.fits,about 4.4\n", "cannot parse prior"),
        "gone.csv": ("path\nnope1.fits\nnope2.fits\n", "none of the 2 spectrum files"),
        "res.csv": (f"path,resolution\n{spectra}/a.fits,-5\n", "not a positive number"),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        out = tmp_path / f"out_{name}"
        with pytest.raises(ManifestError, match=words.replace("+", r"\+").replace("(", r"\(")):
            stellarinf.fit_catalog(path, out, emulator=model, emulator_name=TEST_MODEL, log=None, **SETTINGS)
        assert not out.exists(), name  # nothing started, nothing written
    with pytest.raises(ManifestError, match="Parquet"):
        (tmp_path / "bad.parquet").write_text("no")
        read_catalogue(tmp_path / "bad.parquet")
    # the CLI: exit code 3 and the message, before any work (the shipped Payne's labels, read from its model.json)
    with pytest.raises(SystemExit) as exc:
        main(["fit-catalog", str(tmp_path / "prior.csv"), "-o", str(tmp_path / "cli"), "--emulator", "default-payne"])
    err = capsys.readouterr().err
    assert exc.value.code == 3 and "prior_lgg" in err and "teff" in err and not (tmp_path / "cli").exists()
    with pytest.raises(SystemExit) as exc:
        main(["fit-catalog", str(spectra), "-o", str(tmp_path / "cli"), "--prior", "lgg=4+-0.1", "--emulator", "x"])
    assert exc.value.code == 3


def test_folders_globs_and_lists_name_stars_by_their_files(manifest, tmp_path):
    spectra = manifest.parent / "spectra"
    cat = read_catalogue(spectra)
    assert [s.id for s in cat.stars] == sorted([*TRUTHS, "nanflux", "unreadable"])
    assert [s.id for s in read_catalogue(str(spectra / "[ab].fits")).stars] == ["a", "b"]
    assert [s.id for s in read_catalogue([spectra / "c.fits", spectra / "a.fits"]).stars] == ["c", "a"]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.fits").write_bytes((spectra / "a.fits").read_bytes())
    with pytest.raises(ManifestError, match="same name"):
        read_catalogue([spectra / "a.fits", tmp_path / "x" / "a.fits"])
    with pytest.raises(ManifestError, match="matches no files"):
        read_catalogue(str(tmp_path / "*.fits"))
    parquet = tmp_path / "m.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"PATH": [str(spectra / "a.fits")], "ID": [7], "rv_guess": [3.0]}), parquet)
    cat = read_catalogue(parquet, label_names=["teff", "rv"])
    assert [(s.id, s.path) for s in cat.stars] == [("7", str(spectra / "a.fits"))]
    assert any("rv_guess" in note for note in cat.notes)


def test_a_star_with_several_arms_is_one_row_fitted_from_all_its_files(manifest, model, warm, tmp_path):
    """A manifest path with files separated by ';' (or a folder of folders) is one star: the worker gives the fit one
    multi-arm spectrum of all its files, and a missing arm or an empty file name is said. (Fitting a multi-arm
    spectrum is test_multi_arm's; here the worker's part, and --save-posterior on a star of the manifest.)"""
    from stellarinf.catalog.worker import fit_one, spectrum_of

    _, wl = analytic_setup()
    spec = make_mock(model, wl, {**TRUTHS["a"], "vsini": 5.0, "vmacro": 0.0}, snr=120, resolution=20000, seed=77)
    half = len(wl) // 2
    root, folders = tmp_path / "arms", tmp_path / "stars"
    (folders / "h2").mkdir(parents=True)
    root.mkdir()
    for name, sl in (("h_blue", slice(0, half)), ("h_red", slice(half, None))):
        arm = stellarinf.Spectrum(spec.wavelength[sl], spec.flux[sl], spec.sigma[sl], resolution=20000.0)
        write_spectrum_fits(root / f"{name}.fits", arm)
        write_spectrum_fits(folders / "h2" / f"{name}.fits", arm)
    (root / "manifest.csv").write_text("path,id\nh_blue.fits;h_red.fits,\nh_red.fits; gone_blue.fits,half\n")
    cat = read_catalogue(root / "manifest.csv", label_names=["teff", "logg", "feh", "rv"])
    star, half_gone = cat.stars
    assert star.id == "h" and star.files == (str(root / "h_blue.fits"), str(root / "h_red.fits"))
    assert cat.missing == [half_gone] and half_gone.missing_files == [str(root / "gone_blue.fits")]
    by_folder = read_catalogue(folders)  # one star per sub-folder, named by it
    assert [(s.id, [Path(f).name for f in s.files]) for s in by_folder.stars] == [("h2", ["h_blue.fits", "h_red.fits"])]
    assert {"h_blue", "h_red"} <= {s.id for s in read_catalogue(root).stars}  # files at the top: one star each
    for text, words in (("path\nh_blue.fits;\n", "empty file name"), ("path\nh_blue.fits;x/q.fits\n", "id column")):
        (root / "bad.csv").write_text(text)
        with pytest.raises(ManifestError, match=words):
            read_catalogue(root / "bad.csv")
    # what the worker fits for the star: one spectrum of both arms, every pixel of each, the reading options used up
    kw = {"read_options": {}, "sampler": "laplace"}
    both = spectrum_of(star.path, kw)
    assert [a.n_pix for a in both.arms()] == [half, len(wl) - half] and kw == {"sampler": "laplace"}
    np.testing.assert_array_equal(np.concatenate([a.flux for a in both.arms()]), spec.flux)
    assert spectrum_of(str(root / "h_red.fits"), kw) == str(root / "h_red.fits")  # one file: the fit reads it
    settings = {k: v for k, v in SETTINGS.items() if k != "seed"}
    fit_kwargs = {**settings, "seed": 0, "priors": [], "read_options": {}, "progress": False, "log": None}
    out = tmp_path / "out"
    (out / "stars").mkdir(parents=True)
    brief = fit_one(dataclasses.asdict(half_gone), model, str(out), TEST_MODEL, dict(fit_kwargs))
    assert brief["status"] == "failed" and "gone_blue.fits" in brief["error"]
    assert not (out / "stars" / "half.nc").exists()
    # --save-posterior: the star's draws beside its result, the summary's numbers computed from them (star b: the
    # programs `warm` compiled)
    b = next(s for s in read_catalogue(manifest).stars if s.id == "b")
    brief = fit_one(dataclasses.asdict(b), model, str(out), TEST_MODEL, {**fit_kwargs, "save_posterior": True})
    assert brief["status"] == "ok", brief["error"]
    rec = json.loads((out / "stars" / "b.json").read_text())
    draws = read_inference_data(out / "stars" / rec["posterior_file"]).posterior
    rows = {r["name"]: r for r in rec["summary"]}
    assert draws["teff"].shape == (2, 300)
    # kept draws keep their log density (sample_stats.lp); without --save-posterior it is not computed
    assert read_inference_data(out / "stars" / rec["posterior_file"]).sample_stats["lp"].shape == (2, 300)
    assert float(draws["teff"].median()) == pytest.approx(rows["teff"]["p50"], rel=1e-9)
    for label, value in TRUTHS["b"].items():
        assert abs(rows[label]["p50"] - value) < 4 * rows[label]["sd"], (label, rows[label]["p50"], value)


def test_priors_differing_only_in_numbers_are_one_kind_of_program():
    from stellarinf.catalog.run import prior_structure

    assert prior_structure([], ["logg=4.4+-0.1"]) == prior_structure(["logg=3.0+-0.5"], ["logg=3.6+-0.2"]) == {"logg"}
    assert prior_structure([], ["teff=5000:6000"]) == prior_structure([], []) == frozenset()  # a box is its numbers
    assert prior_structure(["vsini=2:10"], []) == {"vsini:unfolded"}  # not folded: another program
    assert prior_structure(["vsini=2:10"], ["vsini=0:10"]) == frozenset()  # the star's replaces the run's


def test_a_set_of_models_serves_each_stars_arms_with_its_members(tmp_path):
    """``emulator="broad"`` in a catalogue: the run checks the set's shared labels before any work; each worker gives
    a star the set's member for each of its arms (loaded once per process), and a star no member covers is that
    star's failure, with the reason, not the run's."""
    from stellarinf.catalog import worker
    from stellarinf.catalog.run import emulator_for_workers, model_facts
    from stellarinf.io.spectrum import Spectrum
    from stellarinf.shipped_models import MODEL_SETS

    name, ref = emulator_for_workers("broad")
    assert name == ref == "broad"
    labels, kind = model_facts(ref)
    assert len(labels) == 35 and labels[:3] == ["teff", "logg", "feh"] and kind == "payne"
    with pytest.raises(stellarinf.StellarinfError, match="one set of them.*not a list"):
        emulator_for_workers(["default-payne", "default-payne-ir"])

    def arm(lo, hi):
        wl = np.linspace(lo, hi, 300)
        return Spectrum(wavelength=wl, flux=np.ones_like(wl), sigma=np.full_like(wl, 0.01))

    held = worker.worker_model("broad", ref)
    assert held == worker.ModelSet("broad")  # nothing loaded for the set itself
    two = worker.star_model(held, Spectrum.from_arms([arm(6500.0, 6700.0), arm(7600.0, 7870.0)]))
    assert two[0] is worker._MODELS["broad-payne-red"] and two[1] is worker._MODELS["broad-payne-ir"]
    assert worker.star_model(held, arm(6500.0, 6700.0)) is two[0]  # loaded once per process
    assert set(worker._MODELS) >= {"broad-payne-red", "broad-payne-ir"} and "broad-payne-blue" not in worker._MODELS
    assert "broad-tp" in MODEL_SETS
    # a star outside every member's window: its own failure record, with the reason
    path = tmp_path / "gap.fits"
    write_spectrum_fits(path, arm(5200.0, 5400.0))  # between GALAH's blue and green arms
    record = worker.fit_one({"id": "gap", "path": str(path)}, held, str(tmp_path), "broad", {"seed": 0})
    assert record["status"] == "failed"
    failed = json.loads((tmp_path / "stars" / "gap.failed.json").read_text())
    assert "no model of the 'broad' set covers this spectrum" in failed["error"]


def test_chunks_group_stars_of_one_size():
    stars = [StarRequest(str(i), f"/none/{i}", size=n) for i, n in enumerate([100, 200, 100, 200, 100])]
    chunks = chunks_by_size(stars, 3)
    assert [[s.id for s in c] for c in chunks] == [["0", "2", "4"], ["1", "3"]]


def test_the_flag_bits_cover_every_word_the_pipeline_writes():
    assert set(FLAG_ADVICE) | {"tree_depth"} <= set(FLAG_BIT_NUMBERS)
    assert len(set(FLAG_BIT_NUMBERS.values())) == len(FLAG_BIT_NUMBERS)
    assert words_to_bits(["chi2", "pareto_k", "", "none"]) == FLAG_BITS["chi2"] | FLAG_BITS["pareto_k"]
    assert words_to_bits(["something_new"]) == FLAG_BITS["other"]
    assert bits_to_words(FLAG_BITS["edge_low"] | FLAG_BITS["failed"]) == ["failed", "edge_low"]
    record = {
        "status": "ok",
        "global_flags": ["pareto_k"],
        "unreliable": ["pareto_k: ..."],
        "summary": [{"name": "teff", "flags": "edge_high,ess"}, {"name": "logg", "flags": ""}],
    }
    mask, per_label = star_flags(record)
    assert per_label == {"teff": FLAG_BITS["edge_high"] | FLAG_BITS["ess"], "logg": 0}
    assert mask == FLAG_BITS["pareto_k"] | FLAG_BITS["unreliable"] | per_label["teff"]
    assert star_flags({"status": "failed"}) == (FLAG_BITS["failed"], {})
    assert all(len(k) <= 8 for k in header_cards())


def _fit_and_kill_a_worker(manifest, model, out, cluster, chunk_size):
    """``fit_catalog`` on ``cluster`` in a thread; kill -9 of one worker process once the first star's result is
    written; returns the run's result after it finishes (asserting it finished without raising)."""
    import threading

    box = {}

    def run():
        try:
            box["result"] = stellarinf.fit_catalog(
                manifest,
                out,
                scheduler=cluster.scheduler_address,
                emulator=model,
                emulator_name=TEST_MODEL,
                chunk_size=chunk_size,
                progress=False,
                log=None,
                **SETTINGS,
            )
        except BaseException as exc:  # the assertion below says what went wrong
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 300
    while time.time() < deadline and thread.is_alive():
        if (out / "stars").is_dir() and list((out / "stars").glob("[a-g].json")):
            break
        time.sleep(0.02)
    assert thread.is_alive(), box
    victim = next(n for n in cluster.workers.values() if n.pid)
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and "error" not in box, box
    return box["result"]


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost(first, manifest, model, cluster, tmp_path):
    """kill -9 of one worker process while it fits: Dask restarts it (its nanny) and runs its chunk again; the
    stars it had finished are kept (the chunk skips them), and the catalogue is the uninterrupted run's."""
    result, _, _ = first
    again = _fit_and_kill_a_worker(manifest, model, tmp_path / "out", cluster, chunk_size=4)
    # the reasons say whether a star's fit or the cluster failed (this test has failed once under heavy load)
    assert again.counts["fitted_now"] == len(TRUTHS) and again.counts["missing"] == 0, (again.counts, again.failed)
    _assert_same_catalogue(again.table, result.table)


def test_the_only_worker_killed_takes_the_scattered_model_and_the_run_scatters_it_again(
    first, manifest, model, tmp_path
):
    """With one worker, kill -9 takes the scattered model's only copy with it (the restarted worker never had it):
    the run scatters the model again and reruns the chunks that lost it, instead of failing every later star."""
    from distributed import LocalCluster

    result, _, _ = first
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as solo:
        again = _fit_and_kill_a_worker(manifest, model, tmp_path / "out", solo, chunk_size=2)
    assert again.counts["fitted_now"] == len(TRUTHS) and again.counts["missing"] == 0, (again.counts, again.failed)
    _assert_same_catalogue(again.table, result.table)


def test_local_workers_get_disjoint_cores_and_a_pinned_process_runs_on_them():
    """N local workers on N+ cores get disjoint, contiguous, even core sets (more workers than cores: no pinning);
    pinning a process confines every one of its threads, new ones included."""
    import os
    import subprocess
    import sys

    from stellarinf.catalog.affinity import worker_core_sets

    assert worker_core_sets(2, [0, 1]) == [(0,), (1,)]
    assert worker_core_sets(3, range(8)) == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert worker_core_sets(4, [0, 1]) is None
    if not hasattr(os, "sched_getaffinity"):
        return
    core = sorted(os.sched_getaffinity(0))[-1]
    code = (
        "import os, threading; from stellarinf.catalog.affinity import pin_this_process; "
        f"pin_this_process([{core}]); seen = []; "
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0)))); t.start(); t.join(); "
        "print(sorted(os.sched_getaffinity(0)), seen[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("]")
    assert out[0].strip() == f"[{core}" and out[1].strip() == f"[{core}"


def test_gpus_are_found_without_starting_jax_and_each_worker_gets_its_own(tmp_path):
    """GPUs from CUDA_VISIBLE_DEVICES (CUDA's rules) or /dev/nvidiaN; worker i sees GPU i mod n, and workers sharing a
    GPU split JAX's usual 75 % of its memory."""
    from stellarinf.catalog.affinity import gpu_worker_envs, visible_gpus

    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,0"}) == ["2", "0"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,3"}) == ["1"]  # CUDA stops at the first invalid entry
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0", "JAX_PLATFORMS": "cpu"}) == []
    for name in ("nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia10", "null"):
        (tmp_path / name).touch()
    assert visible_gpus({}, dev=str(tmp_path)) == ["0", "1", "10"]
    assert visible_gpus({}, dev=str(tmp_path / "absent")) == []
    assert gpu_worker_envs(2, ["0", "1"]) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    shared = gpu_worker_envs(3, ["0", "1"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in shared] == ["0", "1", "0"]
    assert shared[0]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == shared[2]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.375"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in shared[1]


def test_on_a_machine_with_gpus_the_local_cluster_has_one_worker_per_gpu_each_seeing_only_it(monkeypatch):
    """The cluster fit-catalog starts: by default one worker per GPU, and CUDA_VISIBLE_DEVICES is already set when the
    worker process starts (before JAX could see every GPU). Two GPUs are faked here; JAX on this CPU ignores the
    variable."""
    import os

    from stellarinf.catalog import affinity

    monkeypatch.setattr(affinity, "visible_gpus", lambda: ["0", "1"])
    lines: list[str] = []
    cluster, client = affinity.start_local_cluster(None, 10, lines.append)
    try:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(seen.values()) == ["0", "1"], seen
        names = client.run(lambda dask_worker: dask_worker.name)
        assert sorted(names.values()) == [0, 1]
    finally:
        client.close()
        cluster.close()
    assert "2 worker processes" in lines[0] and "GPUs (CUDA_VISIBLE_DEVICES) 0, 1" in lines[0], lines


def test_a_run_from_before_a_setting_existed_resumes_with_its_value_only(tmp_path):
    """A folder whose settings.json predates ``error_scale`` was fitted with the box table: it resumes with
    ``error_scale="box"`` and refuses ``"star"`` (the catalogue would mix stars fitted two ways)."""
    import json

    from stellarinf.catalog.run import SETTINGS_FILE, check_settings

    settings = {"emulator": "broad", "sampler": "laplace", "error_scale": "box"}
    old = {k: v for k, v in settings.items() if k != "error_scale"}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"settings": old}), encoding="utf-8")
    check_settings(tmp_path, settings, print)  # no error
    with pytest.raises(SettingsMismatch, match="error_scale: 'box' before, 'star' now"):
        check_settings(tmp_path, {**settings, "error_scale": "star"}, print)
