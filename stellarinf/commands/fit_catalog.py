"""``stellarinf fit-catalog INPUT -o OUT``: fit a catalogue of spectra on a Dask cluster (:func:`stellarinf.fit_catalog`).

INPUT is a folder of spectrum files (a folder of folders: one star per sub-folder, its files the arms), a quoted glob
(``'spectra/*.fits'``) or a manifest table (CSV, Parquet, FITS) with a ``path`` column (a star's arm files separated
by ``;``) and optional ``id``, ``resolution``, ``prior_<label>`` and ``n_pix`` columns. OUT is a folder:
``OUT/stars/<id>.json`` per star as it finishes (``<id>.failed.json`` with the reason for a star that could not be
fitted), ``OUT/catalog.parquet`` and ``OUT/catalog.fits`` (one row per star) and ``OUT/settings.json``.

Run the same command again after a crash or a kill: only the stars without a result are fitted, and the catalogue is
assembled again. Other settings than the first run's are refused (exit code 3): use another OUT for them.

Exit codes: 0 the catalogue is written (stars that failed or are flagged are rows saying so: the ``status``,
``error`` and ``flags`` columns); 3 bad input (the message names the problem and the fix), before any fit.
"""

from __future__ import annotations

import click

from ..pipeline import DEFAULT_SAMPLER_MINUTES
from ..shipped_models import shipped_models_text
from .fit import BadInput, SamplerChoice, _parse_fixed
from .options import fit_settings_options, read_options_kwargs, spectrum_read_options


@click.command(name="fit-catalog")
@click.argument("input_", metavar="INPUT")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: stars/<id>.json per star, catalog.parquet, catalog.fits, settings.json.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 4096),
    default=None,
    help="Worker processes of the local Dask cluster started for the run (default: one per GPU, each seeing only its "
    "own, where there are NVIDIA GPUs; else one per CPU core).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Address of an existing Dask scheduler (tcp://HOST:PORT, e.g. a dask-jobqueue cluster) instead of a local "
    "cluster; its workers must see OUT and the spectra at the same paths.",
)
@click.option(
    "--emulator",
    default="auto",
    show_default=True,
    help=f"Model directory, or a shipped model or set: {shipped_models_text(synth=False)}; or 'auto'. With a set "
    "(a model per arm) each star's arms get the set's member for each.",
)
@click.option(
    "--sampler",
    type=SamplerChoice(),
    default=None,
    help="laplace (MAP + Laplace: the fast choice for a survey), laplace-is, nuts, ...; default: chosen for the "
    "emulator and the machine, and printed.",
)
@click.option(
    "--prior",
    "priors",
    multiple=True,
    help="A prior for every star, e.g. --prior logg=4.4+-0.1 or --prior teff=5000:6000 (a manifest's prior_<label> "
    "column overrides it per star). Repeatable.",
)
@click.option("--fix", "fixed", multiple=True, help="Hold a parameter fixed for every star, e.g. --fix vmacro=0.")
@click.option(
    "--resolution",
    type=float,
    default=None,
    help="Resolving power for every star (default: each file's; a manifest's resolution column overrides it).",
)
@fit_settings_options
@click.option("--seed", default=0, show_default=True, type=int, help="Run seed (each star's is derived from it).")
@click.option(
    "--max-minutes",
    default=DEFAULT_SAMPLER_MINUTES,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="NUTS's wall-clock budget per star (past it: laplace-is for that star).",
)
@click.option(
    "--chunk-size",
    default=16,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Stars per Dask task (stars of one pixel count are grouped).",
)
@click.option("--retry-failed", is_flag=True, help="Fit again the stars that failed in an earlier run of this OUT.")
@click.option(
    "--save-posterior",
    is_flag=True,
    help="Also write each star's posterior draws (ArviZ InferenceData, netCDF) as OUT/stars/<id>.nc, with their log "
    "density (which laplace fits otherwise skip: about half of their time).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@spectrum_read_options
def fit_catalog(
    input_,
    output,
    workers,
    scheduler,
    emulator,
    sampler,
    chains,
    draws,
    warmup,
    priors,
    fixed,
    resolution,
    continuum,
    continuum_degree,
    rv_max,
    vsini_max,
    vmacro_max,
    emulator_error,
    error_scale,
    jitter,
    physics_error,
    telluric_mask,
    clip_outliers,
    starts,
    seed,
    max_minutes,
    chunk_size,
    retry_failed,
    save_posterior,
    quiet,
    **read_params,
):
    """Fit every spectrum of INPUT (a folder, a quoted glob, or a manifest table with a path column; a star's arm
    files separated by ';' in it) on a Dask cluster into one catalogue in OUT; restartable (run it again: only what
    is missing is fitted).

    \b
    Example:
      stellarinf fit-catalog spectra/ --workers 4 --emulator default-payne --sampler laplace -o survey
    """
    from ..catalog.run import fit_catalog as run
    from ..inference.priors import parse_prior

    if workers is not None and scheduler is not None:
        raise BadInput("--workers starts a local cluster and --scheduler uses an existing one: give one of them")
    for p in priors:
        parse_prior(p)  # syntax errors before any work
    if resolution is not None and not resolution > 0:
        raise BadInput(f"--resolution {resolution:g}: give a positive resolving power R = λ/Δλ, e.g. 28000")

    def echo(line):
        click.echo(line, err=True)

    result = run(
        input_,
        output,
        workers=workers,
        scheduler=scheduler,
        emulator=emulator,
        sampler=sampler,
        priors=list(priors),
        fixed=_parse_fixed(fixed),
        resolution=resolution,
        continuum=continuum,
        continuum_degree=continuum_degree,
        rv_max=rv_max,
        vsini_max=vsini_max,
        vmacro_max=vmacro_max,
        emulator_error=emulator_error,
        error_scale=error_scale,
        jitter=jitter,
        physics_error=physics_error,
        mask_tellurics=telluric_mask,
        clip_outliers=clip_outliers,
        chains=chains,
        draws=draws,
        warmup=warmup,
        n_starts=starts,
        seed=seed,
        max_minutes=max_minutes,
        read_options=read_options_kwargs(read_params),
        chunk_size=chunk_size,
        retry_failed=retry_failed,
        save_posterior=save_posterior,
        progress=not quiet,
        log=echo,
    )
    for sid, why in list(result.failed.items())[:20]:
        echo(f"not fitted: {sid}: {why}")
    if len(result.failed) > 20:
        echo(f"... and {len(result.failed) - 20} more (the catalogue's error column)")
