"""stellarinf: Bayesian stellar spectroscopy with differentiable emulators.

Layout (one idea per module):

- ``labels``        label spaces: names, units, bounds, network scaling
- ``wavelength``    vacuum/air conversion, instrument windows, wavelength grids
- ``design``        sampling designs for grid label points
- ``io``            grid files (HDF5), spectra, atomic writes, model files
- ``synth``         differentiable 1D LTE synthesizer (realistic and simple fidelity)
- ``emulators``     TransformerPayne and the Payne MLP behind one interface
- ``observe``       observation model: Doppler, broadening, LSF, resampling, continuum
- ``inference``     NumPyro/BlackJAX posteriors, MAP, Laplace, summaries
- ``fisher``        Fisher-matrix Cramér–Rao bounds
- ``cli``           the ``stellarinf`` command
"""

import jax

# Atmospheres and Fisher matrices need float64; networks stay float32 by their own dtype choice.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
