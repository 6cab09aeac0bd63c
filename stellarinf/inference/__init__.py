"""Posteriors on top of :class:`~stellarinf.observe.model.ObservationModel`.

- ``priors``        prior specs (uniform over the training box; ``parse_prior("logg=4.4+-0.1")``)
- ``transforms``    bounded ↔ unconstrained bijections (same as NumPyro's; v sin i folded) with log-Jacobians
- ``density``       :class:`Problem` and ``make_log_density`` (the plain log-density for BlackJAX/MAP)
- ``numpyro_model`` the NumPyro model function (sample sites named by canonical labels)
- ``map``           multi-start L-BFGS MAP (optax), all starts in one program; RV grid scan for the start
- ``laplace``       Gaussian approximation at the unconstrained mode
- ``samplers``      NumPyro NUTS, BlackJAX NUTS (window adaptation), BlackJAX MCLMC, Laplace draws, laplace-is;
                    ``SAMPLER_SPECS``: the one registry of samplers (name → runner and its traits)
- ``results``       ArviZ InferenceData (netCDF), summary Table with flags
- ``plots``         corner plot, data vs model with residuals
- ``batch``         many spectra: MAP/Laplace (vmapped across spectra on accelerators), chains per spectrum, one table
- ``lanes``         chains/starts/draws: vmapped on accelerators, one after another on CPU (faster there)
"""
