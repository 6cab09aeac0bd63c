"""Clear errors: out-of-grid labels, NaN labels, windows outside the line list, bad options."""

import numpy as np
import pytest

from stellarinf.errors import LabelError, StellarinfError, WavelengthError
from stellarinf.synth import AtmosphereCoverageError, LineListCoverageError, fine_grid, synthesize
from stellarinf.synth.atmosphere import check_coverage

WL = fine_grid(6700.0, 6705.0)


def test_out_of_grid_labels_name_the_problem():
    with pytest.raises(AtmosphereCoverageError, match="no ATLAS9 models"):
        synthesize({"teff": 9000.0, "logg": 1.0, "feh": 0.0}, WL)  # hot and low gravity: no models
    with pytest.raises(AtmosphereCoverageError, match="teff=12000"):
        synthesize({"teff": 12000.0, "logg": 4.0, "feh": 0.0}, WL)
    with pytest.raises(AtmosphereCoverageError, match="feh=1"):
        check_coverage(5000.0, 4.0, 1.0)
    check_coverage(np.array([4000.0, 7000.0]), np.array([1.0, 5.0]), np.array([-2.0, 0.5]))  # box corners are fine


def test_nan_and_bad_labels():
    with pytest.raises(LabelError, match="NaN"):
        synthesize({"teff": np.nan, "logg": 4.0, "feh": 0.0}, WL)
    with pytest.raises(LabelError, match="vmic"):
        synthesize({"teff": 5000.0, "logg": 4.0, "feh": 0.0, "vmic": -1.0}, WL)
    with pytest.raises(LabelError, match="does not know label"):
        synthesize({"teff": 5000.0, "logg": 4.0, "feh": 0.0, "alpha": 0.1}, WL)
    with pytest.raises(LabelError, match="fidelity"):
        synthesize({"teff": 5000.0, "logg": 4.0, "feh": 0.0}, WL, fidelity="exact")


def test_window_outside_line_list_and_coarse_grid():
    with pytest.raises(LineListCoverageError, match="outside the line list"):
        synthesize({"teff": 5000.0, "logg": 4.0, "feh": 0.0}, fine_grid(5000.0, 5010.0))
    with pytest.raises(WavelengthError, match="too coarse"):
        synthesize({"teff": 5000.0, "logg": 4.0, "feh": 0.0}, np.linspace(6600.0, 6610.0, 50))
    assert issubclass(AtmosphereCoverageError, StellarinfError)


def test_cli_reports_errors_with_exit_code_3(tmp_path):
    from stellarinf.cli import main

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "synth",
                "--teff",
                "5000",
                "--logg",
                "4",
                "--feh",
                "0",
                "--wmin",
                "5000",
                "--wmax",
                "5010",
                "-o",
                str(tmp_path / "x.fits"),
            ]
        )
    assert exc.value.code == 3
