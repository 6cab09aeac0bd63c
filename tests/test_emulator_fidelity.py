"""Issue #23: Cramér–Rao bounds from an emulator carry its fidelity (CRB emulator/synthesizer per label, stored
with the model by `stellarinf fidelity`) and warn where it over-claims, or say that none is stored."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest
from click.testing import CliRunner

import stellarinf.commands.fidelity as fidelity_command
from stellarinf import emulator_fidelity as EF
from stellarinf.cli import cli
from stellarinf.labels import LabelSpace
from stellarinf.reference_stars import REFERENCE_STARS
from stellarinf.validation.analytic import AnalyticLineModel
from stellarinf.wavelength import Window

SPACE = LabelSpace.from_bounds({"teff": (4000.0, 7000.0), "logg": (1.0, 5.0), "feh": (-2.0, 0.5), "li_fe": (-0.5, 0.5)})
RANGE = (6690.0, 6730.0)
# (λ Å, log10 τ at solar labels, element): a few iron lines and one weak Li line
LINES = [(6695.0, -0.4, "Fe"), (6700.5, -0.8, "Fe"), (6703.6, -0.2, "Fe"), (6708.0, -1.6, "Li"), (6715.4, -0.6, "Fe")]
LINES += [(6720.1, -0.3, "Fe"), (6725.3, -1.0, "Fe")]
WINDOW = Window("test", 6692.0, 6728.0, 28_000.0, 2.5)
# three of the named stars spanning the box (a dwarf, a giant, a metal-poor star): enough for these checks, faster
THREE = tuple((n, dict(EF.REFERENCE_STARS)[n]) for n in ("solar-twin", "cool-giant", "metal-poor-dwarf"))


def analytic(lines=LINES, error_level=0.0):
    return AnalyticLineModel(SPACE, RANGE, None, lines=lines, error_level=error_level)


def test_reference_stars_lie_inside_the_box():
    for name, labels in EF.reference_labels(SPACE):
        assert set(labels) == set(SPACE.names)
        for n, v in labels.items():
            assert SPACE[n].lower < v < SPACE[n].upper, (name, n, v)
    (_, dwarf), (_, giant), (_, poor) = EF.reference_labels(SPACE, THREE)
    assert dwarf["teff"] == 5772.0 and giant["logg"] < 3 and poor["feh"] <= -1.0 and dwarf["li_fe"] == 0.0


def test_ratio_is_one_for_the_model_itself_and_catches_a_line_the_emulator_overdoes():
    truth = analytic()
    same = EF.measure_fidelity(truth, truth, window=WINDOW, stars=THREE)
    for n in SPACE.names:
        assert same.ratio_noise_only[n] == pytest.approx(1.0, abs=1e-3)
    assert len(same.stars) == 3 and not same.over_claims()
    # an "emulator" whose Li line is 10× too strong: its [Li/Fe] derivative is ~10× too large, its bound ~10× too small
    strong_li = [(w, s + 1.0 if el == "Li" else s, el) for w, s, el in LINES]
    emu = analytic(strong_li, error_level=0.002)
    res = EF.measure_fidelity(emu, truth, window=WINDOW, stars=THREE)
    assert res.ratio_noise_only["li_fe"] < 0.3
    assert set(res.over_claims()) == {"li_fe"}
    # the emulator's own error in the noise makes its bounds larger: ratio with the error ≥ noise-only ratio
    for n in SPACE.names:
        assert res.ratio[n] >= res.ratio_noise_only[n] - 1e-6
    doc = res.to_json()
    assert doc["over_claim_threshold"] == 0.8 and doc["snr"] == 100.0 and len(doc["stars"]) == 3
    assert {"crb_emulator", "crb_emulator_noise_only", "crb_reference"} <= set(doc["stars"][0])


class WithMetadata(AnalyticLineModel):
    """The analytic model dressed as an emulator: it carries a model document (``metadata``)."""

    meta_json: str = eqx.field(static=True)

    def __init__(self, metadata, **kw):
        super().__init__(SPACE, (6470.0, 6750.0), None, n_lines=60, seed=2, **kw)
        self.meta_json = json.dumps(metadata)

    @property
    def metadata(self):
        return json.loads(self.meta_json)


def test_fidelity_meta_warns_where_the_emulator_over_claims_and_when_none_is_stored():
    names = ("teff", "logg", "feh", "li_fe", "rv")
    assert EF.fidelity_meta(analytic(), names, False) == (None, [])  # not an emulator: no question asked
    meta, messages = EF.fidelity_meta(WithMetadata({}), names, False)
    assert meta == {"stored": False, "reason": meta["reason"]} and "no stored fidelity" in meta["reason"]
    assert len(messages) == 1 and "stellarinf fidelity" in messages[0]
    entry = {
        "ratio": {"teff": 0.95, "logg": 1.1, "feh": 0.9, "li_fe": 0.7},
        "ratio_noise_only": {"teff": 0.9, "logg": 1.0, "feh": 0.85, "li_fe": 0.24},
        "over_claim_threshold": 0.8,
        "snr": 100.0,
        "stars": [{}, {}, {}],
        "weights_sha256": "abc",
    }
    meta, messages = EF.fidelity_meta(WithMetadata({"fidelity": entry, "weights": {"sha256": "abc"}}), names, False)
    assert meta["ratio"] == entry["ratio_noise_only"] and meta["over_claiming"] == ["li_fe"]
    assert len(messages) == 1 and "over-claims on li_fe" in messages[0] and "4.2× larger" in messages[0]
    meta, messages = EF.fidelity_meta(WithMetadata({"fidelity": entry, "weights": {"sha256": "abc"}}), names, True)
    assert meta["ratio_kind"] == "ratio" and meta["over_claiming"] == ["li_fe"] and "0.70×" in messages[0]
    assert "li_fe 0.70" in EF.format_fidelity(meta)
    # with the star's labels, the nearest reference star speaks; over-claims elsewhere in the box are named apart
    stars = [
        {
            "name": "solar-type dwarf",
            "labels": {"teff": 5772.0, "logg": 4.44, "feh": 0.0},
            "ratio_noise_only": {"li_fe": 0.28, "feh": 0.95},
        },
        {
            "name": "metal-poor star",
            "labels": {"teff": 5900.0, "logg": 4.0, "feh": -1.5},
            "ratio_noise_only": {"li_fe": 0.01, "feh": 0.5},
        },
    ]
    model = WithMetadata({"fidelity": {**entry, "stars": stars}})
    sun = {"teff": 5780.0, "logg": 4.4, "feh": 0.05}
    meta, messages = EF.fidelity_meta(model, ("feh", "li_fe"), False, sun)
    assert meta["reference_star"] == "solar-type dwarf" and meta["ratio"] == {"feh": 0.95, "li_fe": 0.28}
    assert meta["over_claiming"] == ["li_fe"] and meta["over_claiming_elsewhere"] == ["feh"]
    assert "nearest reference star (solar-type dwarf)" in messages[0] and "3.6× larger" in messages[0]
    assert "feh at other reference stars" in messages[1]
    meta, _ = EF.fidelity_meta(model, ("feh", "li_fe"), False, {"teff": 5800.0, "logg": 4.1, "feh": -1.3})
    assert meta["reference_star"] == "metal-poor star" and meta["over_claiming"] == ["feh", "li_fe"]
    # a retrained model (other weights): the stored entry is stale, said as such
    meta, messages = EF.fidelity_meta(WithMetadata({"fidelity": entry, "weights": {"sha256": "new"}}), names, False)
    assert not meta["stored"] and "other weights" in messages[0]


def test_a_stored_ratio_of_zero_is_said_in_words_not_divided_by():
    """A label the synthesizer sees no information on in the window (Li in GALAH's green arm) stores ratio 0: the
    warning says there is no real bound (it once raised ZeroDivisionError, so `crb` on that model failed)."""
    entry = {"ratio": {"feh": 0.9, "li_fe": 0.0}, "ratio_noise_only": {"feh": 0.9, "li_fe": 0.0}, "stars": []}
    meta, messages = EF.fidelity_meta(WithMetadata({"fidelity": entry}), ("feh", "li_fe"), True)
    assert meta["over_claiming"] == ["li_fe"]
    assert "li_fe 0.00× (the synthesizer's spectrum carries no measurable information on it" in messages[0]


def test_crb_prints_and_records_the_stored_ratio_and_warns(tmp_path, monkeypatch):
    from stellarinf import forecast as F

    entry = {
        "ratio": {"teff": 0.97, "logg": 1.02, "feh": 0.93, "li_fe": 0.61},
        "ratio_noise_only": {"teff": 0.96, "logg": 1.0, "feh": 0.92, "li_fe": 0.24},
        "over_claim_threshold": 0.8,
        "snr": 100.0,
        "stars": [{}, {}, {}],
    }
    from stellarinf.validation.setups import analytic_model

    models = {"with": WithMetadata({"fidelity": entry}), "without": WithMetadata({}), "analytic-test": analytic_model()}
    real = F.resolve_model
    monkeypatch.setattr(F, "resolve_model", lambda m, *a, **k: models.get(str(m)) or real(m, *a, **k))
    args = ["crb", "--teff", "5772", "--logg", "4.44", "--feh", "0", "--marginalize", "rv", "--snr", "100"]
    res = CliRunner().invoke(cli, args + ["--emulator", "with", "-o", str(tmp_path / "crb.json")])
    assert res.exit_code == 0, res.output
    assert "emulator fidelity (CRB emulator/synthesizer, noise only" in res.output and "li_fe 0.24" in res.output
    assert "over-claims on li_fe" in res.output
    doc = json.loads((tmp_path / "crb.json").read_text())
    assert doc["emulator_fidelity"]["ratio"]["li_fe"] == 0.24
    assert any("over-claims on li_fe" in w for w in doc["warnings"])
    res = CliRunner().invoke(cli, args + ["--emulator", "without"])
    assert res.exit_code == 0, res.output
    assert "emulator fidelity: none stored" in res.output and "stellarinf fidelity" in res.output
    # the synthesizer-free analytic model asks no fidelity question
    res = CliRunner().invoke(cli, args + ["--emulator", "analytic-test"])
    assert res.exit_code == 0 and "fidelity" not in res.output


def test_fidelity_command_stores_the_ratio_in_model_json(tmp_path, monkeypatch):
    from stellarinf.emulators import Emulator, PayneConfig, PayneMLP, save_emulator
    from stellarinf.emulators.registry import load_emulator

    space = LabelSpace.from_bounds({"teff": (4500.0, 6500.0), "logg": (2.0, 5.0), "feh": (-1.5, 0.5)})
    wl = np.linspace(6690.0, 6730.0, 120)
    emu = Emulator(
        PayneMLP(PayneConfig(3, wl.size, (8, 8)), jax.random.key(1)),
        space,
        (float(wl[0]), float(wl[-1])),
        resolution=28_000.0,
        training_wavelength=wl,
    )
    save_emulator(tmp_path / "m", emu)
    truth = AnalyticLineModel(space, (6680.0, 6740.0), None, n_lines=12, seed=5)
    monkeypatch.setattr(fidelity_command, "reference_model", lambda emulator, window: truth)
    res = CliRunner().invoke(cli, ["fidelity", str(tmp_path / "m"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "with its error" in res.output and "fidelity stored in" in res.output
    loaded = load_emulator(tmp_path / "m")  # the weights' checksum still matches: only model.json changed
    entry = loaded.metadata["fidelity"]
    assert set(entry["ratio"]) == set(entry["ratio_noise_only"]) == {"teff", "logg", "feh"}
    assert entry["weights_sha256"] == loaded.metadata["weights"]["sha256"]
    assert [s["name"] for s in entry["stars"]] == list(REFERENCE_STARS)  # every named reference star
    assert all(set(s["fisher"]["names"]) >= {"teff", "logg", "feh"} for s in entry["stars"])  # both matrices
    assert entry["command"].startswith("stellarinf fidelity") and entry["truth_model"] == "AnalyticLineModel"
    assert EF.stored_fidelity(loaded)[0] == entry
    # shipped models are not updated through their name
    res = CliRunner().invoke(cli, ["fidelity", "default"])
    assert res.exit_code == 3 and "shipped model" in res.output


def test_a_fit_flags_the_labels_the_emulator_over_claims_near_the_fitted_star():
    from test_inference_results import fake_posterior, make_problem

    from stellarinf.inference.results import format_summary, summary_table, to_inference_data

    stars = [
        {
            "name": "solar-type dwarf",
            "labels": {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "li_fe": 0.0},
            "ratio": {"feh": 0.5, "logg": 1.0},
        },
        {"name": "cool giant", "labels": {"teff": 4600.0, "logg": 2.3, "feh": -0.2}, "ratio": {"teff": 0.3}},
    ]
    doc = EF.fit_fidelity_document(WithMetadata({"fidelity": {"stars": stars}}))
    assert doc["threshold"] == 0.8 and doc["stars"][0]["labels"] == {"teff": 5772.0, "logg": 4.44, "feh": 0.0}
    assert EF.fit_fidelity_document(WithMetadata({})) is None and EF.fit_fidelity_document(analytic()) is None
    problem = make_problem()
    idata = to_inference_data(fake_posterior(problem), problem, n_predictive=5)
    assert "fidelity" not in str(list(summary_table(idata)["flags"]))  # the analytic model: nothing stored
    idata.posterior.attrs["emulator_fidelity"] = json.dumps(doc)
    table = summary_table(idata)  # the fake star (5500 K, log g 4.0) is nearest the dwarf: [Fe/H] flagged
    assert {r["name"]: r["flags"] for r in table}["feh"] == "fidelity"
    assert {r["name"]: r["flags"] for r in table}["teff"] == ""
    text = format_summary(table)
    assert "flags=fidelity(feh)" in text and "fidelity (feh): the emulator over-claims" in text
