"""The fit pipeline (``stellarinf.fit_spectrum`` / ``fit_spectra``) on a tiny analytic model injected through the
Python API, and ``stellarinf fit`` on top of it: outputs as one set, settings recorded, bad inputs (exit code 3),
unreliable results (exit code 4), per-spectrum failures in a batch."""

import dataclasses
import hashlib
import json
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import stellarinf
from stellarinf import pipeline
from stellarinf.cli import main
from stellarinf.errors import LabelError, SpectrumError, WavelengthError
from stellarinf.inference.priors import PriorError
from stellarinf.inference.results import read_inference_data
from stellarinf.io.spectrum import Spectrum, write_spectrum_fits
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup
from stellarinf.wavelength import air_vacuum_rv_offset, vacuum_to_air

TRUTH = {"teff": 5300.0, "logg": 3.9, "feh": -0.6, "rv": -21.0, "vsini": 5.0, "vmacro": 0.0}
AT_REST = {**TRUTH, "rv": 0.0}
# the spectra are the analytic model's own: no synthesizer-vs-reality error to model (the measured one, outside
# every measured window, would be the largest measured: the blue arm's 1.2 % floor)
SMALL = dict(rv_max=60.0, vsini_max=20.0, fixed={"vmacro": 0.0}, continuum_degree=0, n_starts=2, physics_error="off")
COMMON = ["--rv-max", "60", "--vsini-max", "20", "--fix", "vmacro=0", "--continuum-degree", "0", "--starts", "2"]
COMMON += ["--physics-error", "off"]
TEST_MODEL = "analytic-injected"  # a name only these tests resolve (monkeypatched loader), not the production CLI's


@pytest.fixture(scope="module")
def model():
    return analytic_setup()[0]


@pytest.fixture(scope="module")
def spectrum_file(tmp_path_factory, model):
    _, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=120, resolution=20000, seed=4)
    path = tmp_path_factory.mktemp("fit") / "star.fits"
    write_spectrum_fits(path, spec)
    return path


@pytest.fixture(scope="module")
def result(spectrum_file, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stellarinf.fit_spectrum(
            spectrum_file, emulator=model, sampler="laplace", draws=400, priors=["logg=3.9+-0.3"], **SMALL
        )


@pytest.fixture
def injected(monkeypatch, model):
    """The CLI resolves TEST_MODEL to the analytic model (tests inject models; the CLI has no test model)."""
    real = pipeline.load_model
    monkeypatch.setattr(pipeline, "load_model", lambda name: model if name == TEST_MODEL else real(name))
    return ["--emulator", TEST_MODEL]


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# ------------------------------------------------------------------------------------------- Python API
def test_fit_spectrum_recovers_the_truth_and_records_every_setting(result, spectrum_file):
    for row in result.summary:
        assert abs(row["p50"] - TRUTH[row["name"]]) < 3 * row["sd"], (row["name"], row["p50"], row["sd"])
    assert 0.7 < result.summary.meta["CHI2RED"] < 1.3 and result.unreliable == []
    s = result.settings
    assert s["input_sha256"] == hashlib.sha256(spectrum_file.read_bytes()).hexdigest() and s["input_file"] == str(
        spectrum_file
    )
    assert len(s["run_id"]) == 32 and s["sampler"] == "laplace" and s["sampler_reason"] == "given"
    assert s["fixed"] == {"vmacro": 0.0} and s["resolution"] == 20000.0 and s["resolution_source"] == "file"
    assert s["continuum"] == pipeline.DEFAULT_CONTINUUM == "marginalise" and s["crop_margin_kms"] == 60.0
    assert s["priors"]["logg"]["kind"] == "gaussian"
    attrs = result.idata.posterior.attrs
    assert json.loads(attrs["settings"]) == json.loads(json.dumps(s)) and attrs["run_id"] == s["run_id"]
    assert json.loads(attrs["fixed"])["vmacro"] == 0.0  # held nuisances are recorded (they used to be lost)
    assert result.summary.meta["RUNID"] == s["run_id"] and json.loads(result.summary.meta["SETTINGS"])["fixed"] == {
        "vmacro": 0.0
    }
    assert result.map.params.keys() == set(result.problem.names) and result.laplace.hessian_ok
    assert {"read_s", "load_s", "map_s", "laplace_s", "sampling_s"} <= set(result.timings)


def test_write_is_one_set_carrying_the_run_id_and_replacing_an_older_set(result, tmp_path, monkeypatch):
    out = tmp_path / "star"
    (tmp_path / "star_corner.png").write_bytes(b"old plot")  # from an older run: it must not survive beside the new set
    (tmp_path / ".star.nc.abc.set.tmp").write_bytes(b"left by a kill")
    paths = result.write(out)
    assert [p.name for p in paths] == ["star.nc", "star_summary.fits", "star_summary.csv"]
    assert not (tmp_path / "star_corner.png").exists() and not list(tmp_path.glob(".*tmp"))
    rid, sha = result.settings["run_id"], result.settings["input_sha256"]
    assert read_inference_data(out.with_suffix(".nc")).posterior.attrs["run_id"] == rid
    head = fits.getheader(tmp_path / "star_summary.fits", 1)
    assert head["RUNID"] == rid and head["INSHA256"] == sha
    csv = Table.read(tmp_path / "star_summary.csv", format="ascii.csv")
    assert set(csv["run_id"]) == {rid} and set(csv["input_sha256"]) == {sha}
    assert csv["name"].tolist() == result.summary["name"].tolist()
    # the CSV keeps no table meta: the input file and the settings that shaped the result are columns of it
    s = result.settings
    one = {c: set(np.asarray(csv[c]).tolist()) for c in pipeline.csv_settings_columns(s)}
    assert one["input_file"] == {s["input_file"]} and s["input_file"].endswith("star.fits")
    assert one["emulator"] == {s["emulator"]} and one["sampler"] == {"laplace"}
    assert one["medium"] == {"vacuum"} and one["medium_source"] == {s["spectrum_provenance"]["medium_source"]}
    assert one["wavelength_unit"] == {s["spectrum_provenance"]["input_wavelength_unit"]}
    assert one["resolution"] == {20000.0} and one["resolution_source"] == {"file"}
    assert one["fit_resolution"] == {"False"}
    assert [json.loads(v) for v in one["fixed"]] == [{"vmacro": 0.0}]
    assert [json.loads(v) for v in one["priors"]] == [["logg=3.9+-0.3"]]

    # a failure while writing the next set (a kill mid-way) leaves the old set whole and no temporaries
    import stellarinf.inference.results as res

    before = {p.name: p.read_bytes() for p in paths}
    real = res.write_table_to

    def fail_on_csv(table, path, fmt):
        if fmt == "ascii.csv":
            raise OSError("disk full")
        real(table, path, fmt)

    monkeypatch.setattr(res, "write_table_to", fail_on_csv)
    with pytest.raises(OSError):
        result.write(out)
    assert {p.name: p.read_bytes() for p in paths} == before and not list(tmp_path.glob(".*tmp"))


def _wait_for(lines, predicate, seconds=120.0):
    """Block until a printed line satisfies ``predicate`` (a slow stage, as long as the heartbeat needs to speak);
    the bound only keeps a broken heartbeat from hanging the test."""
    deadline = time.monotonic() + seconds
    while not any(predicate(line) for line in list(lines)) and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_stage_without_progress_of_its_own_keeps_saying_it_is_working():
    """Issue 23: the MAP stage compiled for ~50 s with nothing printed. StageLog.heartbeat prints '… what, N s'
    while its body runs, says the phase it is told, and stops (thread joined) when the body ends."""
    lines = []
    log = pipeline.StageLog(lines.append, heartbeat_s=0.01)
    log.start("map", "MAP (4 starts)")
    with log.heartbeat("MAP: compiling") as beat:
        _wait_for(lines, lambda line: line.startswith("      … MAP: compiling, "))
        beat.say("MAP: screening 4 starts")
        _wait_for(lines, lambda line: "… MAP: screening 4 starts, " in line)
    log.done("found")
    assert lines[0] == "[1/6] MAP (4 starts) …" and lines[-1].startswith("      found  [")
    beats = lines[1:-1]
    assert beats and all(b.startswith("      … MAP: ") and b.endswith(" s") for b in beats), beats
    assert any("compiling" in b for b in beats) and "screening" in beats[-1]
    silent = pipeline.StageLog(None, heartbeat_s=0.01)  # no echo: nothing printed, nothing started
    with silent.heartbeat("x") as beat:
        beat.say("y")


def test_the_fit_s_map_and_laplace_stages_beat_with_their_phase(spectrum_file, model, monkeypatch):
    """The MAP stage's heartbeat says find_map's phase; a slow fake of the compiled programs stands in for XLA's
    compile, held until the heartbeat has spoken."""
    import stellarinf.inference.laplace as laplace_mod
    import stellarinf.inference.map as map_mod

    lines = []
    real_map, real_laplace = map_mod.find_map, laplace_mod.laplace

    def slow_map(problem, **kw):
        out = real_map(problem, **kw)
        _wait_for(lines, lambda line: "… MAP: Gauss–Newton steps from 2 starts to convergence" in line)
        return out

    def slow_laplace(*a, **kw):
        _wait_for(lines, lambda line: "… Laplace: " in line)
        return real_laplace(*a, **kw)

    monkeypatch.setattr(map_mod, "find_map", slow_map)
    monkeypatch.setattr(laplace_mod, "laplace", slow_laplace)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stellarinf.fit_spectrum(
            spectrum_file, emulator=model, sampler="map", log=pipeline.StageLog(lines.append, heartbeat_s=0.01), **SMALL
        )
    i_map = next(i for i, line in enumerate(lines) if line.startswith("[3/6] MAP"))
    i_lap = next(i for i, line in enumerate(lines) if line.startswith("[4/6] Laplace"))
    map_beats = [line for line in lines[i_map + 1 : i_lap] if "… " in line]
    assert any("Gauss–Newton steps from 2 starts to convergence" in b for b in map_beats), lines
    assert any("… Laplace: " in line for line in lines[i_lap:]), lines


def test_bad_inputs_name_the_problem_before_any_fit(spectrum_file, model, tmp_path):
    with pytest.raises(PriorError, match="unknown parameter 'lgg'"):
        stellarinf.fit_spectrum(spectrum_file, emulator=model, sampler="map", priors=["lgg=4+-0.1"], **SMALL)
    with pytest.raises(PriorError, match="outside the model's range"):
        stellarinf.fit_spectrum(spectrum_file, emulator=model, sampler="map", priors=["logg=9+-0.1"], **SMALL)
    hi = model.label_space["teff"].upper
    with pytest.raises(
        LabelError, match=rf"--fix teff=50000 is outside the model's training box \[.*, {hi:g}\].*Fix it inside the box"
    ):
        stellarinf.fit_spectrum(spectrum_file, emulator=model, sampler="map", **{**SMALL, "fixed": {"teff": 50000.0}})
    with pytest.raises(LabelError, match=r"rv=90 lies outside the box -60–60 km/s.*--rv-max"):
        stellarinf.fit_spectrum(spectrum_file, emulator=model, sampler="map", **{**SMALL, "fixed": {"rv": 90.0}})
    with pytest.raises(Exception, match="unknown sampler 'hmc'.*nuts"):
        stellarinf.fit_spectrum(spectrum_file, emulator=model, sampler="hmc")
    _, wl = analytic_setup()
    with pytest.raises(SpectrumError, match="the flux is zero at all .* usable pixels.*--flux-col"):
        stellarinf.fit_spectrum(
            Spectrum(wl, np.zeros_like(wl), np.full_like(wl, 0.01), resolution=20000.0), emulator=model, **SMALL
        )
    few = wl[100:104]
    with pytest.raises(SpectrumError, match=r"4 usable pixel\(s\) but the fit has 5 free parameters.*needs at least 6"):
        stellarinf.fit_spectrum(
            Spectrum(few, 1 - 0.01 * np.arange(4), np.full(4, 0.01), resolution=20000.0),
            emulator=model,
            sampler="map",
            **SMALL,
        )
    with pytest.raises(
        SpectrumError, match=r"the flux is constant \(1\) at all .* usable pixels"
    ):  # flat to rounding: no lines
        stellarinf.fit_spectrum(
            Spectrum(wl, 1 + 1e-14 * np.arange(wl.size), np.full_like(wl, 0.01), resolution=20000.0),
            emulator=model,
            **SMALL,
        )
    with pytest.raises(LabelError, match="--fix logg=nan: the value must be finite"):
        stellarinf.fit_spectrum(
            spectrum_file, emulator=model, sampler="map", **{**SMALL, "fixed": {"logg": float("nan")}}
        )
    with pytest.raises(WavelengthError, match="outside the model's range"):
        stellarinf.fit_spectrum(
            Spectrum(wl + 2000, 1 + 0.01 * np.sin(wl), np.full_like(wl, 0.01), resolution=20000.0),
            emulator=model,
            **SMALL,
        )


def test_choose_sampler_picks_one_that_finishes_and_says_why(model):
    class TP:
        kind = "transformer-payne"

    class Payne:
        kind = "payne"

    name, why = pipeline.choose_sampler(TP(), "cpu")
    assert name == "laplace-is" and "transformer-payne on a CPU" in why and "hours" in why
    assert "--emulator default-payne" in why
    assert pipeline.choose_sampler(TP(), "gpu")[0] == "nuts"
    # the Payne: NUTS's ~60,000 gradients take ~6 min on a CPU, past a default fit's minutes (issue 23)
    name, why = pipeline.choose_sampler(Payne(), "cpu")
    assert name == "laplace-is" and "~6 minutes" in why and "--sampler nuts" in why
    assert pipeline.choose_sampler(Payne(), "gpu")[0] == "nuts"
    assert pipeline.choose_sampler(model, "cpu")[0] == "nuts"
    # many free parameters (a broad-set fit: 35 labels + rv, v sin i, v macro): importance sampling degenerates, so
    # the CPU default is the Laplace approximation, and the reason says why; a GPU still gets NUTS
    cap = pipeline.LAPLACE_IS_MAX_FREE
    assert pipeline.choose_sampler(Payne(), "cpu", n_free=cap)[0] == "laplace-is"
    name, why = pipeline.choose_sampler(Payne(), "cpu", n_free=38)
    assert name == "laplace" and "38 free parameters" in why and "--sampler nuts" in why
    assert pipeline.choose_sampler(Payne(), "gpu", n_free=38)[0] == "nuts"

    class Broad(Payne):  # without n_free: the model's labels + the three broadenings and rv
        label_space = tuple(range(35))

    assert pipeline.choose_sampler(Broad(), "cpu")[0] == "laplace"
    Broad.label_space = tuple(range(11))  # the galah-red Payne's eleven
    assert pipeline.choose_sampler(Broad(), "cpu")[0] == "laplace-is"


def test_default_emulator_is_chosen_for_the_machine_and_said(monkeypatch, model, spectrum_file, tmp_path, capsys):
    """Issue 23: TransformerPayne's posterior does not fit in minutes on a CPU (laplace-is on the demo star: Pareto k
    0.85 after 8,000 proposals), so there the default is the Payne, said on the console and recorded."""
    name, why = pipeline.choose_emulator("cpu")
    assert name == "default-payne-abo" and "--emulator default" in why and "CPU" in why
    assert pipeline.choose_emulator("gpu")[0] == "default"
    assert pipeline.resolve_emulator("default") == ("default", None)
    assert pipeline.resolve_emulator(model) == (model, None)
    loaded = []
    monkeypatch.setattr(pipeline, "load_model", lambda name: loaded.append(name) or model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(["fit", str(spectrum_file), *COMMON, "--sampler", "map", "-o", str(tmp_path / "s")], capsys)
    assert code in (0, 4), err
    assert loaded == ["default-payne-abo"]
    assert "emulator: default-payne-abo (the Payne on a CPU" in err
    settings = json.loads(Table.read(tmp_path / "s_summary.fits").meta["SETTINGS"])
    assert settings["emulator"] == "default-payne-abo" and settings["emulator_reason"].startswith("the Payne on a CPU")


def test_auto_serves_each_arm_with_the_shipped_model_that_covers_it():
    """``emulator="auto"`` with a spectrum: galah-red gets the ABO Payne (TransformerPayne on an accelerator),
    gaia-rvs its own ABO Payne, a two-arm spectrum of both the pair; a range nothing covers keeps the default (the fit
    then names every model's range)."""
    from stellarinf.io.spectrum import Spectrum

    def arm(lo, hi):
        wl = np.linspace(lo, hi, 400)
        return Spectrum(wavelength=wl, flux=np.ones_like(wl), sigma=np.full_like(wl, 0.01))

    red, rvs = arm(6500.0, 6700.0), arm(8500.0, 8700.0)
    assert pipeline.choose_emulator("cpu", red)[0] == "default-payne-abo"
    name, why = pipeline.choose_emulator("cpu", rvs)
    assert name == "default-payne-rvs-abo" and "covers" in why
    assert pipeline.choose_emulator("cpu", Spectrum.from_arms([red, rvs]))[0] == [
        "default-payne-abo",
        "default-payne-rvs-abo",
    ]
    assert pipeline.choose_emulator("gpu", Spectrum.from_arms([red, rvs]))[0] == ["default", "default-payne-rvs-abo"]
    assert pipeline.choose_emulator("cpu", arm(5000.0, 5030.0))[0] == "default-payne-abo"
    assert pipeline.resolve_emulator("auto", rvs)[0] == "default-payne-rvs-abo"  # this machine: a CPU
    # GALAH's four arms with Gaia RVS: a Payne each, in the arms' order
    blue, green, ir = arm(4720.0, 4900.0), arm(5660.0, 5860.0), arm(7600.0, 7870.0)
    five = Spectrum.from_arms([blue, green, red, ir, rvs])
    expected = [
        "default-payne-blue",
        "default-payne-green",
        "default-payne-abo",
        "default-payne-ir",
        "default-payne-rvs-abo",
    ]
    assert pipeline.choose_emulator("cpu", five)[0] == expected
    assert pipeline.choose_emulator("gpu", five)[0] == [
        "default-payne-blue",
        "default-payne-green",
        "default",
        "default-payne-ir",
        "default-payne-rvs-abo",
    ]


def test_a_model_set_serves_each_arm_with_its_member_and_refuses_what_it_cannot():
    """``emulator="broad"`` (a set of one model per arm, all with the same labels): each arm gets the set's model that
    covers it, one arm its one model; no spectrum to choose from, or an arm the set does not cover: a clear error."""
    from stellarinf.errors import StellarinfError
    from stellarinf.io.spectrum import Spectrum
    from stellarinf.shipped_models import MODEL_SETS

    def arm(lo, hi):
        wl = np.linspace(lo, hi, 400)
        return Spectrum(wavelength=wl, flux=np.ones_like(wl), sigma=np.full_like(wl, 0.01))

    blue, green, red, ir = arm(4720.0, 4900.0), arm(5660.0, 5860.0), arm(6500.0, 6700.0), arm(7600.0, 7870.0)
    rvs = arm(8500.0, 8700.0)
    name, why = pipeline.resolve_emulator("broad", red)
    assert name == "broad-payne-red" and "'broad'" in why
    assert pipeline.resolve_emulator("broad", Spectrum.from_arms([blue, green, red, ir, rvs]))[0] == list(
        MODEL_SETS["broad"]
    )
    assert pipeline.resolve_emulator("broad", Spectrum.from_arms([ir, red]))[0] == ["broad-payne-ir", "broad-payne-red"]
    with pytest.raises(StellarinfError, match="one per arm.*name the arm's model"):
        pipeline.resolve_emulator("broad")
    assert pipeline.resolve_emulator("broad", Spectrum.from_arms([red, rvs]))[0] == [
        "broad-payne-red",
        "broad-payne-rvs",
    ]
    with pytest.raises(StellarinfError, match="no model of the 'broad' set covers this spectrum .5200.0"):
        pipeline.resolve_emulator("broad", arm(5200.0, 5400.0))  # between GALAH's blue and green arms
    with pytest.raises(StellarinfError, match="no model of the 'broad-tp' set covers this spectrum .8500.0"):
        pipeline.resolve_emulator("broad-tp", rvs)  # (the TransformerPaynes have no Gaia RVS member yet)
    # the TransformerPayne set serves the same arms with its own members
    assert pipeline.resolve_emulator("broad-tp", Spectrum.from_arms([blue, ir]))[0] == ["broad-tp-blue", "broad-tp-ir"]
    # every set's models share one label set (the broad domain's 35), so the arms of one star combine, and a fit
    # can swap one set for the other
    from stellarinf.emulators.model_io import read_model_document
    from stellarinf.emulators.registry import model_path

    members = [m for s in MODEL_SETS.values() for m in s]
    names = {tuple(x["name"] for x in read_model_document(model_path(m))["label_space"]) for m in members}
    assert len(names) == 1 and len(next(iter(names))) == 35
    # and each carries its error scale: its error in a cool star is several times a warm star's
    from stellarinf.emulator_fidelity import stored_fidelity
    from stellarinf.emulators.registry import load_emulator

    for m in members:
        emu = load_emulator(m)
        scale = emu.error_scale
        assert scale is not None and float(scale([4100.0, 4.5, 0.3]) / scale([6400.0, 4.0, -0.5])) > 3.0, m
        # and its Cramér–Rao fidelity, measured for these weights and this error model (fits flag over-claims)
        entry, why = stored_fidelity(emu)
        assert entry is not None and len(entry["stars"]) == 7 and all(s.get("fisher") for s in entry["stars"]), (m, why)
    # a forecast takes the set's name as well: one model per arm
    from stellarinf.forecast import resolve_models

    assert [m.label_space.names for m in resolve_models("broad")] == [next(iter(names))] * len(MODEL_SETS["broad"])


def test_synth_fits_each_arm_with_the_synthesizer_itself_and_laplace():
    """``emulator="synth"`` / ``"synth-abo"``: the realistic synthesizer on each arm's model window, with the physics
    that window's shipped Payne learned (molecules in the blue arm) and the name's damping; its sampler is the
    Laplace approximation (a gradient is a synthesis); no spectrum, or an arm no window covers: a clear error."""
    from stellarinf.errors import StellarinfError
    from stellarinf.io.spectrum import Spectrum

    def arm(lo, hi):
        wl = np.linspace(lo, hi, 400)
        return Spectrum(wavelength=wl, flux=np.ones_like(wl), sigma=np.full_like(wl, 0.01))

    red, blue = arm(6500.0, 6700.0), arm(4720.0, 4900.0)
    model, why = pipeline.resolve_emulator("synth", red)
    assert (model.window.name, model.fidelity, model.damping, model.molecules) == (
        "galah-red",
        "realistic",
        "unsold",
        "off",
    )
    assert model.name == "synth (galah-red)" and "no emulator error" in why
    abo = pipeline.resolve_emulator("synth-abo", red)[0]
    assert abo.damping == "abo" and abo.name == "synth-abo (galah-red)"
    models = pipeline.resolve_emulator("synth", Spectrum.from_arms([blue, red]))[0]
    assert [(m.window.name, m.molecules) for m in models] == [("galah-blue", "on"), ("galah-red", "off")]
    assert pipeline._emulator_labels(models, None) == ["synth (galah-blue)", "synth (galah-red)"]
    name, why = pipeline.choose_sampler(model, "cpu")
    assert name == "laplace" and "synthesis" in why
    assert pipeline.choose_sampler(model, "gpu")[0] == "laplace"
    with pytest.raises(StellarinfError, match="'synth' fits with the synthesizer.*needs the spectrum"):
        pipeline.load_model("synth")
    with pytest.raises(StellarinfError, match="no model window covers the arm at 5200.0.*galah-green 5648"):
        pipeline.resolve_emulator("synth", arm(5200.0, 5400.0))


def test_every_shipped_model_is_there_and_covers_its_window():
    """The one table of shipped models matches data/models: each folder loads and answers inside its window."""
    from stellarinf.emulators.kinds import kind_of
    from stellarinf.emulators.registry import load_emulator, model_wavelength_range
    from stellarinf.shipped_models import SHIPPED_MODELS
    from stellarinf.wavelength import get_window

    for name, entry in SHIPPED_MODELS.items():
        lo, hi = model_wavelength_range(name)
        win = get_window(entry.window)
        # inside the window and covering most of it
        assert win.wmin - 1.0 <= lo < hi <= win.wmax + 1.0, name
        assert hi - lo > 0.9 * (win.wmax - win.wmin), name
        assert kind_of(load_emulator(name).network).name == entry.kind, name


def test_diagnose_explains_unreliable_results():
    table = Table(
        rows=[("teff", 1.05, 50.0, "rhat,ess"), ("logg", 1.0, 900.0, "")], names=("name", "r_hat", "ess_bulk", "flags")
    )
    table.meta.update({"FLAGS": "pareto_k,divergences", "NDIVERG": 12, "CHI2RED": 1.0})

    class Post:
        tuning = {"pareto_k": 0.94, "pareto_k_threshold": 0.7}

    d = pipeline.diagnose(table, Post())
    assert len(d["unreliable"]) == 3 and len(d["advice"]) == 3
    assert "Pareto k 0.94" in d["unreliable"][0] and "--sampler nuts" in d["advice"][0]
    assert "12 divergent" in d["unreliable"][1] and "--prior" in d["advice"][1]
    assert "teff" in d["unreliable"][2] and d["r_hat_max"] == pytest.approx(1.05)
    assert "--emulator default-payne" in d["advice"][0] and "--prior" not in d["advice"][0]
    # laplace-is with a label the spectrum hardly constrains: name it, and say how to make the posterior easier
    table["flags"] = ["rhat", "no_information,edge_high"]
    table.meta["FLAGS"] = "pareto_k"

    class ImportancePost:
        method = "laplace-is"
        tuning = {"pareto_k": 0.85, "pareto_k_threshold": 0.7, "importance_ess": 52.0}

    d = pipeline.diagnose(table, ImportancePost())
    assert "--prior logg=MEAN+-SD" in d["advice"][0] and "--fix logg=VALUE" in d["advice"][0]
    assert "--prior" not in d["advice"][1]  # said once
    assert (
        "importance ESS 52" in d["advice"][1] and "--draws 4000" in d["advice"][1] and "--warmup" not in d["advice"][1]
    )
    table.meta["FLAGS"] = ""
    table["flags"] = ["", ""]
    assert pipeline.diagnose(table, object())["unreliable"] == []


# ------------------------------------------------------------------------------------------- many spectra
def test_fit_spectra_records_bad_spectra_and_fits_the_others(spectrum_file, model, tmp_path):
    _, wl = analytic_setup()
    nan_file = tmp_path / "nan.fits"
    write_spectrum_fits(nan_file, Spectrum(wl, np.ones_like(wl), np.full_like(wl, 0.01), resolution=20000.0))
    with fits.open(nan_file, mode="update") as h:  # all-NaN flux, as a broken reduction writes it
        h[1].data["flux"][:] = np.nan
    far = Spectrum(wl + 2000, 1 + 0.01 * np.sin(wl), np.full_like(wl, 0.01), resolution=20000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = stellarinf.fit_spectra(
            [spectrum_file, tmp_path / "missing.fits", nan_file, far],
            emulator=model,
            sampler="map",
            ids=["good", "missing", "nan", "far"],
            draws=200,
            progress=False,
            **SMALL,
        )
    t = batch.table
    assert t["spectrum"].tolist() == ["good", "missing", "nan", "far"]
    assert t["status"].tolist() == ["ok", "failed", "failed", "failed"]
    assert t["sampler"][0] == "map" and t["sampler_fallback"][0] == ""  # no budget to overrun
    assert "does not exist" in t["error"][1] and "WavelengthError" in t["error"][3] and t["error"][2]
    good = t[0]
    for n in ("teff", "logg", "feh", "rv"):
        assert abs(good[n] - TRUTH[n]) < 3 * good[f"{n}_err"], n
    assert np.isnan(t["teff"][1]) and set(batch.failed) == {"missing", "nan", "far"}
    assert t["input_sha256"][0] == hashlib.sha256(spectrum_file.read_bytes()).hexdigest() and t["input_sha256"][1] == ""
    assert (
        t["input_file"][1].endswith("missing.fits") and len(t["input_sha256"][3]) == 64
    )  # in-memory: checksum of its arrays
    paths = batch.write(tmp_path / "batch")
    assert [p.name for p in paths] == ["batch_results.fits", "batch_results.csv", "batch_good.nc"]
    back = Table.read(tmp_path / "batch_results.csv", format="ascii.csv")
    assert back["status"].tolist() == ["ok", "failed", "failed", "failed"] and set(back["run_id"]) == {
        batch.settings["run_id"]
    }
    assert (
        read_inference_data(tmp_path / "batch_good.nc").posterior.attrs["input_sha256"]
        == hashlib.sha256(spectrum_file.read_bytes()).hexdigest()
    )


# ------------------------------------------------------------------------------------------- the CLI
def test_fit_cli_prints_stages_writes_the_set_and_plots(spectrum_file, tmp_path, capsys, injected):
    out = tmp_path / "star"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(
            [
                "fit",
                str(spectrum_file),
                *injected,
                *COMMON,
                "--sampler",
                "laplace",
                "--draws",
                "400",
                "--prior",
                "logg=3.9+-0.3",
                "-o",
                str(out),
                "--plots",
                "--no-draw-log-density",
                "--error-scale",
                "box",
            ],
            capsys,
        )
    assert code == 0, err
    assert "teff" in stdout and "chi2=" in stdout
    for stage in ("[1/6] reading", "[2/6] loading", "[3/6] MAP", "[4/6] Laplace", "[5/6] laplace", "[6/6] writing"):
        assert stage in err, (stage, err)
    idata = read_inference_data(str(out) + ".nc")
    assert {"teff", "logg", "feh", "rv", "vsini"} <= set(idata.posterior.data_vars)
    assert {"posterior_predictive", "observed_data", "constant_data"} <= set(idata.groups())
    assert json.loads(idata.posterior.attrs["priors"])["logg"]["kind"] == "gaussian"
    assert json.loads(idata.posterior.attrs["settings"])["fixed"] == {"vmacro": 0.0}
    # --no-draw-log-density: the Laplace draws without sample_stats.lp, and the settings say so
    assert "sample_stats" not in idata.groups()
    assert json.loads(idata.posterior.attrs["settings"])["draw_log_density"] is False
    assert json.loads(idata.posterior.attrs["settings"])["error_scale"] == {"mode": "box", "scales": None}
    table = Table.read(str(out) + "_summary.fits")
    assert {"mean", "sd", "p16", "p50", "p84", "r_hat", "ess_bulk", "ess_tail", "flags"} <= set(table.colnames)
    for row in table:
        assert abs(row["p50"] - TRUTH[row["name"]]) < 3 * row["sd"], (row["name"], row["p50"], row["sd"])
    assert Table.read(str(out) + "_summary.csv", format="ascii.csv")["name"].tolist() == table["name"].tolist()
    assert (tmp_path / "star_corner.png").stat().st_size > 1000 and (tmp_path / "star_fit.png").stat().st_size > 1000
    assert 0.7 < table.meta["CHI2RED"] < 1.3


def test_fit_cli_fit_resolution_fits_r_and_records_it(spectrum_file, tmp_path, capsys, injected):
    """``--fit-resolution`` (issue 23: it was in the Python API only): R is a fitted parameter in every output,
    and the settings say so and from which R it started."""
    out = tmp_path / "star_r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(
            ["fit", str(spectrum_file), *injected, *COMMON, "--fit-resolution", "--sampler", "laplace"]
            + ["--draws", "200", "-o", str(out)],
            capsys,
        )
    assert code in (0, 4), err
    idata = read_inference_data(str(out) + ".nc")
    settings = json.loads(idata.posterior.attrs["settings"])
    assert settings["fit_resolution"] is True and settings["resolution"] == 20000.0
    assert settings["resolution_source"] == "file"
    r = np.asarray(idata.posterior["resolution"], dtype=float)
    assert r.size and np.all(np.isfinite(r)) and np.all(r > 0)
    table = Table.read(str(out) + "_summary.fits")
    row = table[list(table["name"]).index("resolution")]
    assert 0 < row["p16"] <= row["p50"] <= row["p84"] and abs(row["p50"] - float(np.median(r))) < 1e-6 * row["p50"]
    csv = Table.read(str(out) + "_summary.csv", format="ascii.csv")
    assert "resolution" in list(csv["name"]) and set(np.asarray(csv["fit_resolution"]).tolist()) == {"True"}


def test_fit_cli_default_sampler_is_chosen_and_printed_and_laplace_is_records_diagnostics(
    spectrum_file, tmp_path, capsys, injected, monkeypatch
):
    monkeypatch.setattr(
        pipeline, "choose_sampler", lambda model, backend=None, n_free=None: ("laplace-is", "because the test says so")
    )
    out = tmp_path / "star_is"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(
            ["fit", str(spectrum_file), *injected, *COMMON, "--chains", "2", "--draws", "500", "-o", str(out)], capsys
        )
    assert code == 0, err
    assert "sampler: laplace-is (because the test says so)" in err
    attrs = read_inference_data(str(out) + ".nc").posterior.attrs
    assert attrs["method"] == "laplace-is" and 0 < float(attrs["importance_ess"]) <= 1000
    assert float(attrs["pareto_k"]) < float(attrs["pareto_k_threshold"])
    table = Table.read(str(out) + "_summary.fits")
    assert "pareto_k" not in table.meta["FLAGS"]
    assert np.all(table["ess_bulk"] <= float(attrs["importance_ess"]) + 1e-6)
    for row in table:
        assert abs(row["p50"] - TRUTH[row["name"]]) < 3 * row["sd"], (row["name"], row["p50"], row["sd"])


def test_fit_cli_exits_4_with_advice_when_unreliable(spectrum_file, tmp_path, capsys, injected, monkeypatch):
    real = pipeline.diagnose

    def flagged(summary, posterior):
        d = real(summary, posterior)
        d["unreliable"] = ["pareto_k: the importance weights are unreliable"]
        d["advice"] = ["rerun with more proposals (--draws 2000)"]
        return d

    monkeypatch.setattr(pipeline, "diagnose", flagged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(
            [
                "fit",
                str(spectrum_file),
                *injected,
                *COMMON,
                "--sampler",
                "map",
                "--draws",
                "50",
                "-o",
                str(tmp_path / "u"),
            ],
            capsys,
        )
        assert code == pipeline.EXIT_UNRELIABLE == 4
        assert "unreliable" in err and "--draws 2000" in err and "--allow-unreliable" in err
        assert (tmp_path / "u.nc").exists()  # written, to be looked at
        code, _, err = run(
            [
                "fit",
                str(spectrum_file),
                *injected,
                *COMMON,
                "--sampler",
                "map",
                "--draws",
                "50",
                "--allow-unreliable",
                "-o",
                str(tmp_path / "u"),
            ],
            capsys,
        )
    assert code == 0 and "warning: the result is unreliable" in err


def test_fix_takes_several_parameters_joined_by_commas():
    from stellarinf.commands.fit import BadInput, _parse_fixed

    assert _parse_fixed(["alpha_fe=0, MG_FE=0.1", "vmic=1"]) == {"alpha_fe": 0.0, "mg_fe": 0.1, "vmic": 1.0}
    with pytest.raises(BadInput, match="'c_fe': write NAME=VALUE"):
        _parse_fixed(["alpha_fe=0,c_fe"])


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--prior", "logg=4.4"], "cannot parse"),
        (["--fix", "vmacro"], "NAME=VALUE"),
        (["--resolution", "-5"], "positive resolving power"),
    ],
)
def test_bad_options_exit_3_before_the_model_loads(spectrum_file, tmp_path, capsys, extra, words):
    # the emulator does not exist: these errors must come first (no ~20 s model load before a typo is reported)
    code, _, err = run(
        [
            "fit",
            str(spectrum_file),
            "--emulator",
            str(tmp_path / "no-model"),
            *COMMON,
            "--sampler",
            "map",
            *extra,
            "-o",
            str(tmp_path / "x"),
        ],
        capsys,
    )
    assert code == 3 and words in err


def test_garbage_and_missing_spectra_are_refused_before_the_model_loads(tmp_path, capsys):
    no_model = ["--emulator", str(tmp_path / "no-model")]
    code, _, err = run(["fit", str(tmp_path / "nope.fits"), *no_model, "-o", str(tmp_path / "w")], capsys)
    assert code == 3 and "not found" in err and "nope.fits" in err
    wl = np.linspace(5001.0, 5029.0, 200)
    bad = tmp_path / "bad.fits"
    cols = [
        fits.Column(name="wavelength", format="D", array=wl),
        fits.Column(name="flux", format="D", array=np.ones(200)),
        fits.Column(name="error", format="D", array=np.zeros(200)),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(bad)
    code, _, err = run(["fit", str(bad), *no_model, *COMMON, "-o", str(tmp_path / "y")], capsys)
    assert code == 3 and "uncertainties" in err
    assert not (tmp_path / "y.nc").exists()


def test_the_production_cli_has_no_test_model(tmp_path, capsys, spectrum_file):
    code, _, err = run(
        ["fit", str(spectrum_file), "--emulator", "analytic-test", "--sampler", "map", "-o", str(tmp_path / "t")],
        capsys,
    )
    assert code == 3 and "analytic-test" in err


def test_fit_cli_batch_reports_bad_files_and_fits_the_others(spectrum_file, tmp_path, capsys, injected):
    bad = tmp_path / "zero_sigma.fits"
    wl = np.linspace(5001.0, 5029.0, 200)
    cols = [
        fits.Column(name="wavelength", format="D", array=wl),
        fits.Column(name="flux", format="D", array=1 + 0.01 * np.sin(wl)),
        fits.Column(name="error", format="D", array=np.zeros(200)),
    ]
    fits.BinTableHDU.from_columns(cols).writeto(bad)
    out = tmp_path / "batch"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, stdout, err = run(
            [
                "fit",
                str(spectrum_file),
                str(bad),
                str(tmp_path / "gone.fits"),
                *injected,
                *COMMON,
                "--sampler",
                "map",
                "--draws",
                "100",
                "--allow-unreliable",
                "-o",
                str(out),
            ],
            capsys,
        )  # (R-hat of 100 map draws may flag)
    assert code == 0, err
    assert (
        "not fitted: zero_sigma" in err
        and "uncertainties" in err
        and "not fitted: gone" in err
        and "1 of 3 spectra fitted" in err
    )
    table = Table.read(str(out) + "_results.fits")
    assert table["spectrum"].tolist() == ["star", "zero_sigma", "gone"] and table["status"].tolist() == [
        "ok",
        "failed",
        "failed",
    ]
    assert abs(table["teff"][0] - TRUTH["teff"]) < 3 * table["teff_err"][0]
    assert (tmp_path / "batch_star.nc").exists() and not (tmp_path / "batch_gone.nc").exists()


def test_an_unknown_resolving_power_is_said_with_the_way_forward(model):
    _, wl = analytic_setup()
    spec = make_mock(model, wl, TRUTH, snr=120, resolution=20000, seed=4)
    bare = Spectrum(spec.wavelength, spec.flux, spec.sigma)  # no resolution recorded
    with pytest.warns(UserWarning, match=r"resolving power is unknown.*--resolution R.*--fit-resolution"):
        pipeline.build_problem(model, bare, rv_max=60.0, fixed={"vmacro": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pipeline.build_problem(model, spec, rv_max=60.0, fixed={"vmacro": 0.0})  # known R: nothing to say


# ------------------------------------------------------------------------------------------- air or vacuum
@pytest.fixture(scope="module")
def air_file(tmp_path_factory, model):
    """A mock star at rest (RV 0: the shift of a wrong medium then stands out) with its wavelengths in air and no
    header keyword saying so (as many reductions write it)."""
    _, wl = analytic_setup()
    spec = make_mock(model, wl, AT_REST, snr=120, resolution=20000, seed=4)
    cols = [
        fits.Column(name="wavelength", format="D", array=vacuum_to_air(spec.wavelength)),
        fits.Column(name="flux", format="D", array=spec.flux),
        fits.Column(name="error", format="D", array=spec.sigma),
    ]
    path = tmp_path_factory.mktemp("air") / "air_star.fits"
    fits.BinTableHDU.from_columns(cols).writeto(path)
    return path


def test_fit_cli_reads_an_air_spectrum_with_medium_air_and_records_it(air_file, tmp_path, capsys, injected):
    out = tmp_path / "air"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(
            [
                "fit",
                str(air_file),
                *injected,
                *COMMON,
                "--sampler",
                "laplace",
                "--draws",
                "400",
                "--resolution",
                "20000",
                "--medium",
                "air",
                "-o",
                str(out),
            ],
            capsys,
        )
    assert code == 0, err
    table = Table.read(str(out) + "_summary.fits")
    rv = table[table["name"] == "rv"][0]
    assert abs(rv["p50"] - AT_REST["rv"]) < 3 * rv["sd"], (
        rv["p50"],
        rv["sd"],
    )  # read as vacuum it sits near -83.5 km/s
    assert "air_vacuum" not in table.meta["FLAGS"] and "--medium" not in err
    for settings in (
        json.loads(table.meta["SETTINGS"]),
        json.loads(read_inference_data(str(out) + ".nc").posterior.attrs["settings"]),
    ):
        prov = settings["spectrum_provenance"]
        assert (prov["input_medium"], prov["medium_source"]) == ("air", "caller") and settings["read_options"] == {
            "medium": "air"
        }
        assert (
            prov["input_wavelength_unit"]
            and prov["wavelength_unit_source"] == "default"
            and prov["source"] == str(air_file)
        )


def test_an_air_spectrum_assumed_vacuum_gets_the_air_vacuum_warning_and_flag(air_file, model, tmp_path):
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stellarinf.fit_spectrum(
            air_file,
            emulator=model,
            sampler="laplace",
            draws=400,
            resolution=20000.0,
            log=lines.append,
            **{**SMALL, "rv_max": 150.0},
        )
    rv = result.summary[result.summary["name"] == "rv"][0]
    expected = AT_REST["rv"] + air_vacuum_rv_offset(result.problem.obs_model.wavelength)  # about -83.5 km/s
    assert abs(rv["p50"] - expected) < 3 * rv["sd"] + 0.5, (rv["p50"], expected)
    prov = result.settings["spectrum_provenance"]
    assert (prov["input_medium"], prov["medium_source"]) == ("vacuum", "default")
    [msg] = result.diagnostics["warnings"]
    assert "assumed" in msg and "--medium air" in msg
    assert any(line.strip() == f"warning: {msg}" for line in lines)  # printed with the stages (the CLI's stage output)
    assert "air_vacuum" in result.summary.meta["FLAGS"].split(",") and result.unreliable == []  # a warning, not exit 4
    paths = result.write(tmp_path / "assumed")
    assert "air_vacuum" in fits.getheader(paths[1], 1)["FLAGS"]
    assert read_inference_data(paths[0]).posterior.attrs["medium_warning"] == msg
    from stellarinf.inference.results import FLAG_ADVICE, format_summary

    assert "--medium air or --medium vacuum" in FLAG_ADVICE["air_vacuum"] and "air_vacuum: " in format_summary(
        result.summary
    )


@pytest.fixture(scope="module")
def vacuum_twin(tmp_path_factory, model):
    """A star at rest whose vacuum wavelengths (header says so) are the air file's numbers: the same pixels after the
    crop, so its fit reuses the air star's compiled programs, but nothing to warn about."""
    _, wl = analytic_setup()
    lo, hi = model.wavelength_range
    numbers = vacuum_to_air(wl)
    numbers = numbers[(numbers >= lo) & (numbers <= hi)]  # the edge pixels the crop drops anyway
    spec = make_mock(model, numbers, AT_REST, snr=120, resolution=20000, seed=5)
    path = tmp_path_factory.mktemp("twin") / "vacuum_star.fits"
    write_spectrum_fits(path, spec)
    return path


def test_fit_spectra_masks_each_stars_cosmic_rays_as_a_single_fit_does(model):
    """A batch weights out each star's pixels more than 5 total σ off its first MAP's model (as ``fit_spectrum``
    masks them) and fits again: the star hit by cosmic rays comes back on its truth with χ² ≈ 1 and its count in
    ``outlier_pixels_masked``; the clean star loses nothing. Without clipping the spikes stay in its χ²."""
    _, wl = analytic_setup()
    clean = make_mock(model, wl, TRUTH, snr=120, resolution=20000, seed=4)
    hit = make_mock(model, wl, TRUTH, snr=120, resolution=20000, seed=5)
    spikes = np.array([len(wl) // 5, len(wl) // 2, 4 * len(wl) // 5])
    hit = dataclasses.replace(hit, flux=np.where(np.isin(np.arange(len(wl)), spikes), hit.flux + 0.5, hit.flux))

    def fit(clip):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return stellarinf.fit_spectra(
                [clean, hit],
                emulator=model,
                sampler="map",
                ids=["clean", "hit"],
                draws=200,
                progress=False,
                clip_outliers=clip,
                **SMALL,
            )

    batch = fit(True)
    t = batch.table
    assert batch.settings["clip_outliers"] is True
    assert t["outlier_pixels_masked"].tolist() == [0, 3 * len(spikes)]  # each spike and its two neighbours
    for row in t:
        assert 0.7 < row["chi2_reduced"] < 1.3, row["spectrum"]
        for n in ("teff", "logg", "feh", "rv"):
            assert abs(row[n] - TRUTH[n]) < 3 * row[f"{n}_err"], (row["spectrum"], n)
    kept = fit(False).table
    assert "outlier_pixels_masked" not in kept.colnames and kept["chi2_reduced"][1] > 2 * t["chi2_reduced"][1]


def test_fit_spectra_warns_per_spectrum_and_records_each_provenance(air_file, vacuum_twin, model, tmp_path):
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = stellarinf.fit_spectra(
            [air_file, vacuum_twin],
            emulator=model,
            sampler="laplace",
            draws=200,
            resolution=20000.0,
            progress=False,
            log=lines.append,
            **{**SMALL, "rv_max": 150.0},
        )
    t = batch.table
    assert t["spectrum"].tolist() == ["air_star", "vacuum_star"] and t["status"].tolist() == ["ok", "ok"]
    assert t["flags"][0].split(";")[0] == "air_vacuum" and "--medium air" in t["warning"][0]
    assert "air_vacuum" not in t["flags"][1] and t["warning"][1] == ""
    assert any(line.startswith("air_star: warning: ") and "--medium air" in line for line in lines)
    assert "air_star" not in batch.unreliable  # a warning, not a reason for exit 4
    prov = batch.settings["spectrum_provenance"]
    assert (prov["air_star"]["input_medium"], prov["air_star"]["medium_source"]) == ("vacuum", "default")
    twin = prov["vacuum_star"]
    assert (twin["input_medium"], twin["medium_source"], twin["source"]) == ("vacuum", "header", str(vacuum_twin))
    assert batch.idatas["air_star"].posterior.attrs["medium_warning"] == t["warning"][0]
    assert "medium_warning" not in batch.idatas["vacuum_star"].posterior.attrs


def test_no_air_vacuum_warning_for_an_ordinary_rv_or_a_held_one(result, model):
    assert result.diagnostics["warnings"] == [] and "air_vacuum" not in result.summary.meta["FLAGS"]
    idata = result.idata.copy()
    idata.posterior = idata.posterior.drop_vars("rv")  # rv held fixed: nothing to judge
    _, wl = analytic_setup()
    assert pipeline.medium_warning(idata, Spectrum(wl, np.ones_like(wl), np.full_like(wl, 0.01))) is None


# ------------------------------------------------------------------------------------------- batch reliability
def test_row_unreliable_follows_the_single_spectrum_rule():
    assert pipeline.row_unreliable("") == [] and pipeline.row_unreliable("chi2,one_chain;teff:edge_low,ess") == []
    assert pipeline.row_unreliable("pareto_k") == ["pareto_k"]
    assert (
        pipeline.row_unreliable("air_vacuum;chi2;teff:edge_low") == []
    )  # a warning with a fix, not unreliable sampling
    assert pipeline.row_unreliable("chi2,divergences;teff:rhat,ess;logg:rhat") == ["divergences", "rhat (teff, logg)"]
    # v sin i and v macro traded: their split unconverged alone is not a reason, unless their combination is not either
    assert pipeline.row_unreliable("conservative;vsini:rhat,traded;vmacro:rhat,traded") == []
    assert pipeline.row_unreliable("vbroad_rhat;vsini:rhat,traded;vmacro:traded") == ["rhat (vsini, vbroad)"]
    assert pipeline.row_unreliable("teff:rhat;vsini:rhat,traded") == ["rhat (teff)"]
    assert pipeline.row_unreliable("vsini:rhat") == ["rhat (vsini)"]  # not traded: counts


def test_fit_cli_batch_exits_4_when_any_spectrum_is_unreliable(spectrum_file, tmp_path, capsys, injected, monkeypatch):
    import shutil

    import stellarinf.inference.batch as batch_mod

    real = batch_mod._row_from_table

    def divergent_star(sid, table):  # as if the sampler had diverged on "star" and nothing were flagged on "other"
        return {
            **real(sid, table),
            "flags": "chi2,divergences;teff:edge_low" if sid == "star" else "chi2;teff:edge_low",
        }

    monkeypatch.setattr(batch_mod, "_row_from_table", divergent_star)
    other = shutil.copy(spectrum_file, tmp_path / "other.fits")
    argv = [
        "fit",
        str(spectrum_file),
        str(other),
        *injected,
        *COMMON,
        "--sampler",
        "map",
        "--draws",
        "50",
        "--quiet",
        "-o",
        str(tmp_path / "b"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(argv, capsys)
        assert code == pipeline.EXIT_UNRELIABLE, err
        assert (
            "1 of the fitted spectra are unreliable" in err and "  - star: divergences" in err and "- other" not in err
        )
        assert "--allow-unreliable" in err and Table.read(tmp_path / "b_results.fits")["status"].tolist() == [
            "ok",
            "ok",
        ]  # written
        code, _, err = run([*argv, "--allow-unreliable"], capsys)
    assert code == 0 and "warning: 1 of the fitted spectra are unreliable" in err


def test_nuts_past_its_budget_falls_back_to_laplace_is_and_says_so(spectrum_file, model):
    # a budget no NUTS run can meet: the fit stops NUTS after its first chunk, falls back to Laplace + importance
    # sampling, and records why (settings, diagnostics warnings), instead of running on
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stellarinf.fit_spectrum(
            spectrum_file,
            emulator=model,
            sampler="nuts",
            chains=2,
            draws=100,
            warmup=100,
            max_minutes=1e-6,
            log=lines.append,
            **SMALL,
        )
    assert res.settings["sampler"] == "laplace-is" and "budget" in res.settings["sampler_reason"]
    assert "NUTS stopped" in res.settings["sampler_fallback"] and res.settings["max_minutes"] == 1e-6
    assert any("NUTS stopped" in w for w in res.diagnostics["warnings"])
    assert any("falling back to laplace-is" in str(line) for line in lines)
    teff = res.summary[list(res.summary["name"]).index("teff")]
    assert abs(teff["p50"] - TRUTH["teff"]) < 4 * teff["sd"]


def test_a_batch_holds_each_star_to_the_nuts_budget_and_says_which_sampler_drew_it(spectrum_file, model, tmp_path):
    # a batch (stellarinf fit A B ...) ran NUTS without any budget: each star is now held to max_minutes as a single
    # fit is, falls back to laplace-is alone, and its row says so
    other = tmp_path / "other.fits"
    write_spectrum_fits(other, make_mock(model, analytic_setup()[1], TRUTH, snr=120, resolution=20000, seed=5))
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = stellarinf.fit_spectra(
            [spectrum_file, other],
            emulator=model,
            sampler="nuts",
            chains=2,
            draws=100,
            warmup=100,
            max_minutes=1e-6,
            progress=False,
            log=lines.append,
            **SMALL,
        )
    t = batch.table
    assert t["status"].tolist() == ["ok", "ok"] and t["sampler"].tolist() == ["laplace-is", "laplace-is"]
    assert all("NUTS stopped" in f and "budget" in f for f in t["sampler_fallback"])
    assert sum("warning: NUTS stopped" in line and "drawn by laplace-is instead" in line for line in lines) == 2
    assert batch.settings["max_minutes"] == 1e-6 and batch.idatas["star"].posterior.attrs["sampler"] == "laplace-is"
    for r in t:
        assert abs(r["teff"] - TRUTH["teff"]) < 4 * r["teff_err"]
