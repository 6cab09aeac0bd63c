"""Fitting with the synthesizer itself (``emulator="synth"`` builds one per arm): no emulator in between, so a
star the synthesizer made comes back at its truth, with nothing of an emulator's error in its error bars."""

import numpy as np
import pytest

from stellarinf import fit_spectrum
from stellarinf.labels import LabelSpace
from stellarinf.synth import SynthesizerModel
from stellarinf.validation.mocks import make_mock
from stellarinf.wavelength import Window

# a narrow box and 30 Å of the red arm in the simple fidelity: the same code path as the realistic synthesizer on a
# whole arm (minutes), in seconds
WINDOW = Window("test-red", 6690.0, 6720.0, 28000.0)
SPACE = LabelSpace.from_bounds({"teff": (5200.0, 6200.0), "logg": (3.5, 4.8), "feh": (-0.6, 0.3)})
TRUTH = {"teff": 5850.0, "logg": 4.2, "feh": -0.15, "rv": 7.0, "vsini": 6.0, "vmacro": 0.0}


@pytest.mark.slow  # ~75 s on one core, 55 of them compiling the synthesizer's MAP and Hessian programs; the routing
# of emulator="synth" is tested in CI (test_inference_cli); run with `pytest -m slow` after changing the synthesizer
# model or the pipeline's handling of models without an error model
def test_a_fit_through_the_synthesizer_recovers_the_star_it_made():
    model = SynthesizerModel(SPACE, WINDOW, "simple")
    wl = WINDOW.grid()[20:-20]
    spec = make_mock(model, wl, TRUTH, snr=150, resolution=WINDOW.resolution, seed=3)
    result = fit_spectrum(
        spec,
        emulator=model,
        sampler="laplace",
        physics_error="off",
        fixed={"vmacro": 0.0},
        rv_max=60.0,  # (the crop margin: the default 300 km/s would leave little of 30 Å)
        n_starts=2,
        seed=0,
    )
    table = result.summary
    rows = {str(n): i for i, n in enumerate(table["name"])}
    for name in ("teff", "logg", "feh", "rv", "vsini"):
        row = table[rows[name]]
        assert abs(row["mean"] - TRUTH[name]) < 3.5 * row["sd"], (name, row["mean"], row["sd"])
    # the synthesizer is the reference: no emulator term, so no systematic sd beside the posterior's
    assert "sd_sys" not in table.colnames or np.allclose(table["sd_sys"], 0.0)
    assert np.isfinite(table["sd"]).all() and (table["sd"] > 0).all()
    assert "synth" in table.meta["SETTINGS"]
