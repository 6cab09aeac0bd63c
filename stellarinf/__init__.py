"""stellarinf: Bayesian stellar spectroscopy with differentiable emulators.

Fit a spectrum from Python::

    import stellarinf
    result = stellarinf.fit_spectrum("spectrum.fits", emulator="default-payne")
    print(result.summary)          # one row per label: median (p50), sd, 16/84 %, R-hat, ESS, flags
    result.write("star")           # star.nc (ArviZ), star_summary.fits, star_summary.csv

Fit many stars at once, sharing the instrument's resolving power (one R per plate; labels per star)::

    joint = stellarinf.fit_joint(["a.fits", "b.fits", "c.fits"], emulator="default-payne",
                                 share=("resolution",), groups=["plate1", "plate1", "plate2"])
    print(joint.shared)            # one row per shared value: median, sd, R-hat, ESS (and what each star alone said)
    print(joint.stars)             # one row per star: every label's median, sd, R-hat
    joint.write("cluster")         # cluster.nc (dims chain, draw, star), cluster_stars.*, cluster_shared.*

Fit a survey's catalogue on a Dask cluster (restartable: run it again after a crash, only what is missing is fitted)::

    cat = stellarinf.fit_catalog("spectra/", "survey_out", workers=4, emulator="default-payne", sampler="laplace")
    print(cat.table["id", "teff_p50", "teff_sd", "flags"])   # also survey_out/catalog.parquet and catalog.fits

Forecast the precision of an instrument before any data exist (Cramér–Rao bounds)::

    from stellarinf.forecast import forecast
    fc = forecast("default-payne", stellarinf.reference_star("red-clump"), window="giraffe-hr15n", snr=100)
    print(fc.result.marginal())    # {label: best possible sd}; fc.at_snr(200) rescales without new derivatives

The user API (imported on first use, so ``import stellarinf`` stays fast):

- :func:`fit_spectrum`, :func:`fit_spectra`, :class:`FitResult`   the fit pipeline (:mod:`stellarinf.pipeline`)
- :func:`fit_joint`, :class:`JointFitResult`                       many stars at once, sharing nuisances such as one
                                                                   resolving power per plate (:mod:`stellarinf.joint_pipeline`)
- :func:`fit_catalog`, :class:`CatalogResult`                     a survey's catalogue on a Dask cluster, restartable, into
                                                                   one results table (:mod:`stellarinf.catalog`)
- :func:`read_spectrum`, :class:`Spectrum`                         observed spectra (vacuum Å)
- :func:`load_emulator`                                            ``"default"``, ``"default-payne"`` or a model directory
- :func:`choose_sampler`, :data:`SAMPLER_SPECS`                    the samplers and the default choice
- :func:`choose_emulator`                                          the default emulator for this machine (``"auto"``)
- :func:`get_instrument`, :func:`reference_star`                   instrument presets (``data/instruments.ecsv``) and
                                                                   named reference stars, for :mod:`stellarinf.forecast`
- :func:`enable_float64`                                           double precision (see below)

Precision: atmospheres, likelihoods and Fisher matrices need float64, and JAX computes in float32 unless
told otherwise. ``import stellarinf`` does not change JAX's settings; the entry points that need it
(:func:`fit_spectrum`, :func:`fit_spectra`, the synthesizer, the Fisher functions, the ``stellarinf``
command) call :func:`enable_float64` themselves. If you build the lower-level pieces yourself
(``ObservationModel``, ``Problem``, ``find_map``), call ``stellarinf.enable_float64()`` first, before
creating any JAX array. Networks keep float32 parameters by their own dtype choice.

Layout (one idea per module):

- ``pipeline``      fit_spectrum / fit_spectra: the one fit pipeline (CLI, demo and batch call it)
- ``joint_pipeline`` fit_joint: many stars in one posterior, nuisances shared across them (``fit --joint``)
- ``catalog``       fit_catalog: a survey's stars on Dask, one result file per star, one catalogue (``fit-catalog``)
- ``labels``        label spaces: names, units, bounds, network scaling
- ``wavelength``    vacuum/air conversion, model windows, wavelength grids
- ``instruments``   the one table of set-ups: instrument presets with their arms and sources, model windows
- ``design``        sampling designs for grid label points
- ``io``            grid files (HDF5), spectra, atomic writes, model files
- ``synth``         differentiable 1D LTE synthesizer (realistic and simple fidelity)
- ``emulators``     TransformerPayne and the Payne MLP behind one interface
- ``observe``       observation model: Doppler, broadening, LSF, resampling, continuum
- ``inference``     NumPyro/BlackJAX posteriors, MAP, Laplace, summaries; the sampler registry
- ``fisher``        Fisher-matrix Cramér–Rao bounds; ``forecast``: bounds for a star, instrument and S/N
- ``cli``           the ``stellarinf`` command
"""

from __future__ import annotations

import importlib
import os
import warnings

__version__ = "0.1.0"

# ArviZ ≥ 0.21 prints a multi-line FutureWarning about its own refactor on the first import of each day: noise
# for a stellarinf user, who does not call ArviZ directly (stellarinf pins what it uses).
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)


def enable_float64() -> None:
    """Switch JAX to double precision, float64 (``jax_enable_x64``); idempotent and cheap.

    Why explicit: it changes JAX for the whole process (your own JAX code included), so importing a library
    should not do it behind your back. The stellarinf entry points that need it call it; call it yourself
    before building lower-level objects (observation models, problems) or any JAX array they will use.
    Arrays created before the switch stay float32.
    """
    import jax

    if not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)


COMPILATION_CACHE_BYTES = 4 * 2**30  # JAX evicts the least recently used programs beyond this


def enable_compilation_cache(min_compile_seconds: float = 2.0) -> None:
    """Keep compiled XLA programs on disk (JAX's persistent compilation cache), so a later process loads them
    instead of compiling them again: a grid resumed or extended, a second grid of the same window, another forecast.

    The folder is ``jax/`` in :func:`stellarinf.paths.cache_dir` (``$STELLARINF_CACHE`` or ``~/.cache/stellarinf``),
    at most :data:`COMPILATION_CACHE_BYTES`; only programs that took at least ``min_compile_seconds`` to compile are
    kept. A cache folder already chosen (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is, and
    ``STELLARINF_COMPILATION_CACHE=off`` turns this off. Entries are keyed by the program, the JAX version and the
    machine's backend, so a changed program is compiled afresh. Processes started afterwards (fit-catalog's local Dask
    workers) inherit the folder through ``JAX_COMPILATION_CACHE_DIR``. Every ``stellarinf`` command calls this; call it
    yourself from Python. The folder must be yours alone: JAX runs what it finds there.
    """
    import jax

    from .paths import cache_dir

    if os.environ.get("STELLARINF_COMPILATION_CACHE", "").lower() in ("off", "0", "false", "no"):
        return
    if jax.config.jax_compilation_cache_dir:
        return
    folder = str(cache_dir() / "jax")
    jax.config.update("jax_compilation_cache_dir", folder)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # the user's own threshold wins
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
    # the processes this one starts (fit-catalog's Dask workers, benchmark scripts) read these when they import JAX
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(
        jax.config.jax_persistent_cache_min_compile_time_secs
    )
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(COMPILATION_CACHE_BYTES)


# name -> (module, attribute): resolved on first access (PEP 562), so `import stellarinf` imports no JAX
_EXPORTS = {
    "fit_spectrum": ("stellarinf.pipeline", "fit_spectrum"),
    "fit_spectra": ("stellarinf.pipeline", "fit_spectra"),
    "FitResult": ("stellarinf.pipeline", "FitResult"),
    "BatchResult": ("stellarinf.pipeline", "BatchResult"),
    "fit_catalog": ("stellarinf.catalog.run", "fit_catalog"),
    "CatalogResult": ("stellarinf.catalog.run", "CatalogResult"),
    "fit_joint": ("stellarinf.joint_pipeline", "fit_joint"),
    "JointFitResult": ("stellarinf.joint_pipeline", "JointFitResult"),
    "choose_sampler": ("stellarinf.pipeline", "choose_sampler"),
    "choose_emulator": ("stellarinf.pipeline", "choose_emulator"),
    "read_spectrum": ("stellarinf.io.spectrum", "read_spectrum"),
    "Spectrum": ("stellarinf.io.spectrum", "Spectrum"),
    "load_emulator": ("stellarinf.emulators.registry", "load_emulator"),
    "SAMPLER_SPECS": ("stellarinf.inference.samplers", "SAMPLER_SPECS"),
    "get_instrument": ("stellarinf.instruments", "get_instrument"),
    "reference_star": ("stellarinf.reference_stars", "reference_star"),
    "StellarinfError": ("stellarinf.errors", "StellarinfError"),
}

__all__ = ["__version__", "enable_float64", "enable_compilation_cache", *_EXPORTS]


def __getattr__(name: str):
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'stellarinf' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
