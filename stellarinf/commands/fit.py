"""``stellarinf fit``: posterior (NUTS/MCLMC/laplace-is), MAP or Laplace for observed spectra.

A thin layer over :mod:`stellarinf.pipeline`: parse and check the options, call ``fit_spectrum`` (one
spectrum) or ``fit_spectra`` (several: a batch), write, print.

One spectrum writes ``OUT.nc`` (ArviZ InferenceData, netCDF), ``OUT_summary.fits`` and ``OUT_summary.csv``
as one set and prints the summary. Several spectra write ``OUT_results.fits`` + ``.csv`` (one row per
spectrum; a spectrum that could not be fitted has ``status=failed`` and the reason) and ``OUT_<name>.nc``
per fitted spectrum.

Several files that are the **arms of one star** (``--arms``; GALAH's per-CCD files ``<sobject_id><CCD>.fits`` of
one star are recognised without it) are combined into one multi-arm spectrum (``pipeline.read_arms``) and fitted
in one call like one spectrum; ``--no-arms`` keeps them a batch. ``--emulator`` may be repeated: each arm is
evaluated by the model that covers it.

Exit codes: 0 done; 3 bad input (the message names the fix); 4 the result (in a batch: any fitted spectrum's)
is flagged unreliable (Pareto k, divergences, R-hat: the files are written and the message says what to do next;
``--allow-unreliable`` exits 0 instead).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import click

from ..pipeline import DEFAULT_SAMPLER_MINUTES, EXIT_UNRELIABLE
from ..shipped_models import shipped_models_text
from .options import fit_settings_options, read_options_kwargs, spectrum_read_options

EXIT_BAD_INPUT = 3


class BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


class Unreliable(click.ClickException):
    exit_code = EXIT_UNRELIABLE


class SamplerChoice(click.Choice):
    """``--sampler``: the names of the sampler registry (:data:`stellarinf.inference.samplers.SAMPLER_SPECS`),
    read when first needed, so ``stellarinf --help`` does not import JAX."""

    def __init__(self, case_sensitive: bool = True) -> None:
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:
        from ..inference.samplers import sampler_names

        return tuple(sampler_names())


def _parse_fixed(items) -> dict[str, float]:
    """``--fix`` values, each ``NAME=VALUE`` or several joined by commas (``alpha_fe=0,mg_fe=0``: the abundances one
    arm cannot measure, held)."""
    out = {}
    for text in (part.strip() for item in items for part in str(item).split(",")):
        if "=" not in text:
            raise BadInput(f"--fix {text!r}: write NAME=VALUE, e.g. --fix vmacro=0")
        name, value = text.split("=", 1)
        try:
            v = float(value)
        except ValueError:
            raise BadInput(f"--fix {text!r}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise BadInput(f"--fix {text!r}: the value must be finite")
        out[name.strip().lower()] = v
    return out


def _check_files(paths) -> None:
    """Every input exists, checked before anything is loaded (the emulator takes ~20 s)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise BadInput(f"spectrum file(s) not found: {', '.join(map(str, missing))}; check the path(s)")


@click.command(name="fit")
@click.argument("spectra", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--emulator",
    "emulator",
    default=("auto",),
    show_default="auto",
    multiple=True,
    help=f"Model directory, or a shipped model: {shipped_models_text()}; or 'auto' (TransformerPayne on a GPU, the "
    "Payne on a CPU, where TransformerPayne's posterior takes longer than minutes; the GALAH blue, green and IR arms and "
    "Gaia RVS get their own Payne; the choice is printed). Repeatable for the arms of one star: each arm is "
    "evaluated by the model that covers it.",
)
@click.option(
    "--arms/--no-arms",
    "arms",
    default=None,
    help="--arms: the files are the arms of ONE star (e.g. a blue and a red arm), combined into one spectrum and "
    "fitted in one call (each arm its own R, continuum and model; labels, RV and broadening shared). --no-arms: a "
    "batch of stars. Default: a batch, except GALAH CCD files of one star (<sobject_id><CCD>.fits), combined.",
)
@click.option(
    "--rv-offsets", is_flag=True, help="With arms: fit an RV zero-point offset for every arm but the first (km/s)."
)
@click.option(
    "--sampler",
    type=SamplerChoice(),
    default=None,
    help="nuts = NumPyro NUTS; mclmc = BlackJAX MCLMC; laplace-is = Laplace corrected by importance sampling (no gradients: "
    "the fast posterior for TransformerPayne on a CPU; check the pareto_k flag); map/laplace = fast approximations. "
    "Default: chosen for the emulator and the machine (NUTS on a GPU, laplace-is for the shipped emulators on a CPU), "
    "and printed.",
)
@click.option(
    "--prior",
    "priors",
    multiple=True,
    help="e.g. --prior logg=4.4+-0.1 (Gaussian) or --prior teff=5000:6000 (uniform). Repeatable.",
)
@click.option(
    "--fix",
    "fixed",
    multiple=True,
    help="Hold a parameter fixed, e.g. --fix vmacro=0 (inside its box). Repeatable, or comma-separated: "
    "--fix alpha_fe=0,mg_fe=0.",
)
@click.option("--resolution", type=float, default=None, help="Instrument resolving power (default: from the file).")
@click.option(
    "--fit-resolution", is_flag=True, help="Fit the resolving power too (starting from --resolution or the file's)."
)
@click.option(
    "--degrade-to-model",
    is_flag=True,
    help="Data sharper than the model (R above the model's, e.g. > 28,000): smooth and resample them to the model's R "
    "instead of refusing them.",
)
@fit_settings_options
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--max-minutes",
    default=DEFAULT_SAMPLER_MINUTES,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="NUTS's wall-clock budget (in a batch, each spectrum's): past it, NUTS stops and the fit falls back to "
    "laplace-is (with --joint: to the joint Laplace draws), and says so.",
)
@click.option(
    "--draw-log-density/--no-draw-log-density",
    default=None,
    help="One star, --sampler laplace or map: evaluate the log density at every draw (OUT.nc's sample_stats.lp; "
    "nothing in the results uses it). Default: only when that takes at most 30 s (a note says when it was left out).",
)
@click.option("--plots/--no-plots", default=False, help="Write OUT_corner.png and OUT_fit.png.")
@click.option(
    "--allow-unreliable",
    is_flag=True,
    help=f"Exit 0 even when the result (in a batch: any spectrum's) is flagged unreliable (else exit {EXIT_UNRELIABLE}).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output prefix: OUT.nc, OUT_summary.fits/.csv.",
)
@click.option("--quiet", is_flag=True, help="Do not print the summary or the sampler's progress bar.")
@click.option(
    "--joint", is_flag=True, help="Fit all SPECTRA jointly, sharing the --share nuisances (stellarinf.fit_joint)."
)
@click.option(
    "--share",
    multiple=True,
    default=("resolution",),
    show_default=True,
    help="With --joint: a nuisance shared by all stars (resolution, rv, vsini, vmacro, ln_jitter). Repeatable.",
)
@click.option(
    "--groups",
    default=None,
    help="With --joint: comma-separated group key per spectrum (e.g. plate1,plate1,plate2): one shared value per group.",
)
@spectrum_read_options
def fit(
    spectra,
    emulator,
    arms,
    rv_offsets,
    sampler,
    chains,
    draws,
    warmup,
    priors,
    fixed,
    resolution,
    fit_resolution,
    degrade_to_model,
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
    draw_log_density,
    plots,
    allow_unreliable,
    output,
    quiet,
    joint,
    share,
    groups,
    **read_params,
):
    """Infer the labels of SPECTRUM (or several: a batch) with the emulator's training box as prior.

    The simplest input is a FITS table with columns wavelength (Å, vacuum unless the header says air;
    --medium air when it does not say), flux and error.

    Exit code 4: the result is flagged unreliable (Pareto k, divergences, R-hat); in a batch, any fitted
    spectrum's (the message lists them; --allow-unreliable exits 0). A spectrum that cannot be fitted is a
    failed row of the batch; exit code 3 only when none can be.
    """
    from ..inference.priors import parse_prior
    from ..io.readers.galah import galah_arm_set
    from ..pipeline import fit_spectra, fit_spectrum, output_prefix, read_arms

    if joint and arms:
        raise BadInput("--joint fits many stars and --arms the arms of one star: choose one")
    combine = (arms if arms is not None else galah_arm_set(spectra) is not None) and not joint
    if combine and len(spectra) < 2:
        raise BadInput("--arms combines the arms of one star: give two or more files")
    if rv_offsets and not combine:
        raise BadInput("--rv-offsets is for the arms of one star: pass --arms with two or more files")
    emulator = list(emulator) if len(emulator) > 1 else emulator[0]
    if isinstance(emulator, list) and not combine and len(spectra) > 1:
        raise BadInput("several --emulator models are for the arms of one star (--arms); a batch uses one model")
    if len(spectra) == 1 or combine:
        _check_files(
            spectra
        )  # at once; in a batch a missing file is that spectrum's failure (fit_spectra reads all first)
    prior_reqs = [parse_prior(p) for p in priors]  # syntax errors before any heavy work
    fixed = _parse_fixed(fixed)
    out = output_prefix(output)
    if resolution is not None and not resolution > 0:
        raise BadInput(
            f"--resolution {resolution:g}: give a positive resolving power R = λ/Δλ, e.g. --resolution 28000"
        )
    kw = dict(
        emulator=emulator,
        sampler=sampler,
        priors=prior_reqs,
        fixed=fixed,
        resolution=resolution,
        continuum=continuum,
        continuum_degree=continuum_degree,
        rv_max=rv_max,
        vsini_max=vsini_max,
        vmacro_max=vmacro_max,
        emulator_error=emulator_error,
        error_scale=error_scale,
        jitter=jitter,
        chains=chains,
        draws=draws,
        warmup=warmup,
        n_starts=starts,
        seed=seed,
        read_options=read_options_kwargs(read_params),
        physics_error=physics_error,
        mask_tellurics=telluric_mask,
    )

    def echo(line):
        click.echo(line, err=True)

    if joint:
        from .joint import run_joint

        return run_joint(
            spectra,
            {**kw, "max_minutes": max_minutes},
            share,
            groups,
            out,
            echo,
            quiet=quiet,
            allow_unreliable=allow_unreliable,
        )
    if len(spectra) == 1 or combine:
        if combine:
            echo(f"the {len(spectra)} files are arms of one star: fitting them together")
            one = read_arms(spectra, resolution=resolution, read_options=kw["read_options"])
        else:
            one = spectra[0]
        extra = {"rv_offsets": True} if rv_offsets else {}
        result = fit_spectrum(
            one,
            fit_resolution=fit_resolution,
            degrade_to_model=degrade_to_model,
            progress=not quiet,
            log=echo,
            clip_outliers=clip_outliers,
            max_minutes=max_minutes,
            draw_log_density=draw_log_density,
            **kw,
            **extra,
        )
        result.write(out, log=_writing_log(echo))
        if plots:
            _plots(result.idata, out)
        if not quiet:
            from ..inference.results import format_summary

            click.echo(format_summary(result.summary))
        click.echo(f"run {result.run_id}: wrote {out}.nc, {out}_summary.fits, {out}_summary.csv", err=True)
        if result.unreliable:
            lines = ["the result is unreliable:"] + [f"  - {r}" for r in result.unreliable] + ["what to do next:"]
            lines += [f"  - {a}" for a in result.diagnostics["advice"]]
            lines.append("the files are written; pass --allow-unreliable to accept them with exit code 0")
            if allow_unreliable:
                echo("warning: " + "\n".join(lines))
            else:
                raise Unreliable("\n".join(lines))
        return
    if fit_resolution or degrade_to_model:
        raise BadInput(
            f"{'--fit-resolution' if fit_resolution else '--degrade-to-model'} is for one spectrum at a time; "
            "fit the spectra one by one"
        )
    batch = fit_spectra(
        spectra, progress=not quiet, log=echo, max_minutes=max_minutes, clip_outliers=clip_outliers, **kw
    )
    batch.write(out)
    if not quiet:
        click.echo("\n".join(batch.table.pformat(max_lines=-1, max_width=-1)))
    failed = batch.failed
    for sid, why in failed.items():
        echo(f"not fitted: {sid}: {why}")
    if failed and len(failed) == len(spectra):
        raise BadInput(f"none of the {len(spectra)} spectra could be fitted (reasons above)")
    click.echo(
        f"run {batch.settings['run_id']}: {len(spectra) - len(failed)} of {len(spectra)} spectra fitted; wrote "
        f"{out}_results.fits, {out}_results.csv",
        err=True,
    )
    unreliable = batch.unreliable
    if unreliable:
        lines = [f"{len(unreliable)} of the fitted spectra are unreliable:"] + [
            f"  - {sid}: {', '.join(why)}" for sid, why in unreliable.items()
        ]
        lines.append(
            "what to do next: refit each of them alone (stellarinf fit FILE ...) for the advice on its flags; the rows and "
            "files are written; pass --allow-unreliable to accept them with exit code 0"
        )
        if allow_unreliable:
            echo("warning: " + "\n".join(lines))
        else:
            raise Unreliable("\n".join(lines))


def _writing_log(echo):
    from ..pipeline import StageLog

    log = StageLog(echo, total=6)
    log.i = 5
    return log


def _plots(idata, out: Path):
    from ..inference.plots import plot_corner, plot_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plot_corner(idata, path=out.with_name(out.name + "_corner.png"))
        plot_fit(idata, path=out.with_name(out.name + "_fit.png"))
