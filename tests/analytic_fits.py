"""Small fits on the analytic line model shared by several test modules: one observation model (one star, marginalised
constant continuum) and the settings a tiny catalogue is fitted with."""

import warnings

from stellarinf.observe.model import ObservationModel
from stellarinf.validation.mocks import make_mock
from stellarinf.validation.setups import analytic_setup

# fit_spectrum keywords of the catalogue tests (MAP + Laplace, the analytic model's box, v macro fixed)
CATALOG_SETTINGS = dict(
    sampler="laplace",
    chains=2,
    draws=300,
    rv_max=60.0,
    vsini_max=20.0,
    fixed={"vmacro": 0.0},
    continuum_degree=0,
    n_starts=2,
    physics_error="off",
    seed=0,
)


def analytic_obs_model(truth, snr=150, seed=3) -> ObservationModel:
    """An :class:`ObservationModel` of a mock of the analytic line model at ``truth`` (R 20,000, S/N ``snr``)."""
    model, wl = analytic_setup()
    spec = make_mock(model, wl, truth, snr=snr, resolution=20000, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ObservationModel(
            model,
            spec,
            rv_max=100,
            vsini_max=20,
            vmacro_max=10,
            fixed={"vmacro": 0.0},
            continuum_degree=0,
            continuum="marginalise",
        )
