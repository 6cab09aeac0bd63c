"""``stellarinf demo``: fit the shipped demo star end to end (MAP → NUTS) and compare with truth and CRBs.

The demo star (``data/demo/demo_star.fits``, truth in ``data/demo/demo_truth.json``) is a realistic-fidelity
synthetic spectrum at the galah-red window (R = 28,000) with Gaussian noise, made by
``python data/make_defaults.py --steps demo``. By default the fit uses the shipped Payne MLP
(``default-payne``), because NUTS with TransformerPayne ``small`` costs about 0.24 s per gradient on a
2-core CPU (the Payne: 5.6 ms; about an hour for a posterior); ``--emulator default`` selects TransformerPayne. Either runs through
the full observation model (Doppler, rotation, LSF, resampling, Chebyshev continuum,
emulator error in the likelihood); the Cramér–Rao bounds are computed at the truth with the same
observation model, the same free parameters and the same per-pixel σ.

``--star galah`` fits the four-arm demo star instead (``data/demo/demo_galah_star.fits``: the four GALAH arms of one
star of the broad domain, 35 labels, made by ``python data/make_defaults.py --steps demo-galah``) through the
``broad`` set, one Payne per arm, with MAP + Laplace (NUTS over 37 parameters and ~11,000 pixels would take a quarter
of an hour or more on 2 CPU cores). :data:`DEMO_STARS` is the one table of demo stars.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import ModelFileError, StellarinfError
from .fit import SamplerChoice
from .options import read_options_kwargs, spectrum_read_options

MAKE_DEFAULTS = "python data/make_defaults.py"


@dataclass(frozen=True)
class DemoStar:
    """A shipped demo star: its spectrum and truth files (under the data folder), the ``make_defaults.py`` step
    that makes them, and the emulator and sampler the demo uses for it unless told otherwise."""

    spectrum: tuple[str, str]
    truth: tuple[str, str]
    step: str
    emulator: str
    sampler: str
    about: str


# the one table of demo stars (`stellarinf demo --star NAME`)
DEMO_STARS = {
    "red": DemoStar(
        ("demo", "demo_star.fits"),
        ("demo", "demo_truth.json"),
        "demo",
        "default-payne",
        "nuts",
        "GALAH's red arm, 11 labels: NUTS through the Payne in minutes on 2 CPU cores",
    ),
    # 37 free parameters over ~11,000 pixels: NUTS would take a quarter of an hour or more on 2 CPU cores (13 ms a
    # gradient), the Laplace approximation about 2 minutes with its compiles
    "galah": DemoStar(
        ("demo", "demo_galah_star.fits"),
        ("demo", "demo_galah_truth.json"),
        "demo-galah",
        "broad",
        "laplace",
        "the four GALAH arms of one star, 35 labels through the broad set: MAP + Laplace",
    ),
}


class BadInput(click.ClickException):
    exit_code = 3


# ------------------------------------------------------------------------------------------- inputs
def demo_paths(spectrum: str | None, truth: str | None, star: str = "red") -> tuple[Path, Path]:
    """The demo spectrum and truth files (given, or the shipped demo star ``star``'s), with a clear error if
    missing."""
    from ..paths import data_dir

    shipped = DEMO_STARS[star]
    if spectrum is None:
        spec_path = data_dir().joinpath(*shipped.spectrum)
        truth_path = Path(truth) if truth else data_dir().joinpath(*shipped.truth)
    else:
        spec_path = Path(spectrum)
        truth_path = Path(truth) if truth else spec_path.with_name(spec_path.stem.replace("_star", "") + "_truth.json")
    if not spec_path.exists():
        raise StellarinfError(
            f"the demo spectrum {spec_path} is missing; make it with `{MAKE_DEFAULTS} --steps {shipped.step}` "
            "(or restore it from git)"
        )
    if not truth_path.exists():
        raise StellarinfError(
            f"the demo truth file {truth_path} is missing; make it with `{MAKE_DEFAULTS} --steps {shipped.step}` "
            "or pass --truth"
        )
    return spec_path, truth_path


def read_truth(path: Path) -> dict[str, float]:
    """Flat {name: value} of the true labels and nuisances (``labels`` and ``nuisances`` of the truth file)."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StellarinfError(
            f"the truth file {path} is not valid JSON ({exc}); regenerate it with `{MAKE_DEFAULTS} --steps demo`"
        ) from None
    flat = {}
    for group in ("labels", "nuisances"):
        flat.update({k: float(v) for k, v in dict(doc.get(group, {})).items()})
    if not flat:
        raise StellarinfError(
            f"the truth file {path} has no 'labels'; regenerate it with `{MAKE_DEFAULTS} --steps demo`"
        )
    return flat


def load_demo_emulator(name: str):
    from ..emulators.registry import load_emulator

    try:
        return load_emulator(name)
    except ModelFileError as exc:
        raise missing_model_error(name, exc) from None


def missing_model_error(name: str, exc: ModelFileError) -> StellarinfError:
    """The error for a model that cannot be loaded: for a shipped one, how to make or restore it."""
    from ..emulators.registry import NAMED_MODELS

    if name in NAMED_MODELS:
        return StellarinfError(
            f"the shipped {name!r} emulator is missing ({exc}); make the defaults with `{MAKE_DEFAULTS}` "
            "(or restore data/models/ from git), or pass --emulator MODEL_DIR"
        )
    return exc


# ------------------------------------------------------------------------------------------- pieces
def fiducial_at_truth(obs, problem, truth: dict[str, float], fallback: dict[str, float]) -> dict[str, float]:
    """Every free parameter at its true value; continuum coefficients at the flat normalised continuum
    ([1, 0, 0, …]) and anything without a truth (e.g. a label the star file does not list) at ``fallback``."""
    out = {}
    for n in problem.names:
        if n in truth:
            out[n] = float(truth[n])
        elif n.startswith("cont_"):
            out[n] = 1.0 if n.endswith("_0") else 0.0
        else:
            out[n] = float(fallback[n])
    return out


def cramer_rao_bounds(obs, problem, params: dict[str, float]) -> dict[str, float]:
    """Marginal CRBs of the free parameters at ``params`` for the fit's own likelihood (same σ, mask,
    continuum and emulator error, correlated modes included) and, like the fit, each label's box as its prior
    (a Gaussian of the uniform's sd, width/√12: with 35 labels, many barely constrained, the bound without it is ~1.3×
    the posterior's sd for Teff; benchmarks/README.md, "Posterior vs bound")."""
    from ..fisher import likelihood_fisher
    from ..forecast import box_prior_sigmas

    full = {**{k: float(v) for k, v in problem.fixed.items()}, **params}
    box = box_prior_sigmas(problem.bounds(), obs.label_names)
    res = likelihood_fisher(obs, full, list(problem.names), box, meta={"what": "demo CRB at the truth, box prior"})
    return {k: float(v) for k, v in res.marginal().items()}


def comparison_rows(table, truth: dict[str, float], crb: dict[str, float]) -> list[dict]:
    """One row per non-continuum parameter: truth, median, sd, 16–84 %, pull, CRB, sd/CRB, sd_sys."""
    rows = []
    for r in table:
        name = str(r["name"])
        if name.startswith("cont_"):
            continue
        t = truth.get(name, math.nan)
        sd = float(r["sd"])
        c = crb.get(name, math.nan)
        rows.append(
            {
                "label": name,
                "unit": str(r["unit"]),
                "truth": t,
                "median": float(r["p50"]),
                "sd": sd,
                "p16": float(r["p16"]),
                "p84": float(r["p84"]),
                "pull": (float(r["p50"]) - t) / sd if sd > 0 and math.isfinite(t) else math.nan,
                "crb": c,
                "sd_over_crb": sd / c if c and math.isfinite(c) and c > 0 else math.nan,
                # the emulator's label-space systematic (0 when not measured): the floor a real star adds
                "sd_sys": float(r["sd_sys"]) if "sd_sys" in table.colnames else 0.0,
                "flags": str(r["flags"]),
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    def f(v, spec):
        return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)

    head = (
        f"{'label':<8} {'unit':<5} {'truth':>9} {'median':>9} {'sd':>8} {'16%':>9} {'84%':>9} {'(med−truth)/sd':>15} "
        f"{'CRB':>8} {'sd/CRB':>7} {'sd_sys':>8}  flags"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        big = abs(r["truth"]) >= 100
        spec = ".1f" if big else ".3f"
        lines.append(
            f"{r['label']:<8} {r['unit']:<5} {f(r['truth'], spec):>9} {f(r['median'], spec):>9} {f(r['sd'], '.3g'):>8} "
            f"{f(r['p16'], spec):>9} {f(r['p84'], spec):>9} {f(r['pull'], '+.2f'):>15} {f(r['crb'], '.3g'):>8} "
            f"{f(r['sd_over_crb'], '.2f'):>7} {f(r['sd_sys'], '.3g'):>8}  {r['flags']}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- command
@click.command(name="demo")
@click.option(
    "--star",
    type=click.Choice(tuple(DEMO_STARS)),
    default="red",
    show_default=True,
    help="Which shipped demo star: "
    + "; ".join(
        f"{name} = {d.about} (--emulator {d.emulator}, --sampler {d.sampler})" for name, d in DEMO_STARS.items()
    )
    + ".",
)
@click.option(
    "--emulator",
    default=None,
    help="Emulator (default: the star's, see --star): default-payne (the Payne MLP: NUTS in minutes on 2 CPU cores), "
    "default (TransformerPayne small: about 40x slower per gradient on a CPU; use a GPU or --sampler laplace-is), "
    "a set (broad) or a model directory.",
)
@click.option(
    "--sampler",
    type=SamplerChoice(),
    default=None,
    help="Default: the star's (see --star). nuts = NumPyro NUTS; laplace-is = Laplace corrected by importance "
    "sampling (values only: minutes with TransformerPayne on a CPU); laplace = MAP + Laplace draws only (seconds).",
)
@click.option("--chains", type=int, default=4, show_default=True)
@click.option("--draws", type=int, default=500, show_default=True, help="Draws per chain after warm-up.")
@click.option("--warmup", type=int, default=300, show_default=True, help="Warm-up iterations per chain.")
@click.option("--map-starts", type=int, default=4, show_default=True, help="Multi-start MAP starts.")
@click.option(
    "--free-vmacro",
    is_flag=True,
    help="Fit vmacro too (by default it is held at the truth file's value: at R = 28,000 it is degenerate with vsini).",
)
@click.option("--rv-max", type=float, default=100.0, show_default=True, help="RV prior bound |rv| (km/s).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--spectrum",
    type=click.Path(dir_okay=False),
    default=None,
    help="Fit this spectrum instead of the shipped demo star.",
)
@click.option(
    "--truth", type=click.Path(dir_okay=False), default=None, help="Truth JSON for --spectrum (labels, nuisances)."
)
@click.option("--quiet", is_flag=True, help="No sampler progress bar.")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default="demo_output", show_default=True)
@spectrum_read_options
def demo(
    star,
    emulator,
    sampler,
    chains,
    draws,
    warmup,
    map_starts,
    free_vmacro,
    rv_max,
    seed,
    spectrum,
    truth,
    quiet,
    output_dir,
    **read_params,
):
    """Fit a shipped demo star (MAP → NUTS; the four-arm star: MAP → Laplace); print the posterior next to the truth
    and the Cramér–Rao bounds.

    Writes demo.nc (ArviZ InferenceData), demo_summary.fits/.csv, demo_report.json and the plots
    demo_corner.png and demo_fit.png into OUTPUT_DIR.
    """
    from ..inference.plots import plot_corner, plot_fit
    from ..inference.results import SD_SYS_EXPLAINED, footer_flags, summary_table
    from ..io.atomic import write_json_atomic
    from ..machine import machine_info
    from ..pipeline import StageLog, fit_spectrum, stamp_table

    if chains < 1 or draws < 1 or warmup < 0 or map_starts < 1:
        raise BadInput("need --chains ≥ 1, --draws ≥ 1, --warmup ≥ 0 and --map-starts ≥ 1")
    t_all = time.perf_counter()
    out = Path(output_dir)
    spec_path, truth_path = demo_paths(spectrum, truth, star)
    emulator = emulator or DEMO_STARS[star].emulator
    sampler = sampler or DEMO_STARS[star].sampler
    truth_flat = read_truth(truth_path)
    fix_vmacro = None if free_vmacro else truth_flat.get("vmacro", 0.0)

    # read, load, MAP, Laplace, sampling: the library's one fit pipeline (the same as `stellarinf fit`)
    log = StageLog(lambda line: click.echo(line, err=True), total=7)
    try:
        result = fit_spectrum(
            spec_path,
            emulator=emulator,
            sampler=sampler,
            fixed={} if fix_vmacro is None else {"vmacro": float(fix_vmacro)},
            # the demo star is made by the synthesizer the emulators learned: no synthesizer-vs-reality error
            physics_error="off",
            rv_max=rv_max,
            chains=chains,
            draws=draws,
            warmup=warmup,
            n_starts=map_starts,
            seed=seed,
            progress=not quiet,
            log=log,
            read_options=read_options_kwargs(read_params),
        )
    except ModelFileError as exc:
        raise missing_model_error(emulator, exc) from None
    problem, map_result, posterior = result.problem, result.map, result.posterior
    obs = problem.obs_model
    if "pareto_k" in posterior.tuning and posterior.tuning["pareto_k"] > posterior.tuning["pareto_k_threshold"]:
        log.note(
            "UNRELIABLE: the posterior is far from its Laplace approximation (several modes, or a rough emulator); "
            "use --sampler nuts"
        )

    log.start("crb", "Cramér–Rao bounds at the truth (same observation model)")
    fiducial = fiducial_at_truth(obs, problem, truth_flat, map_result.params)
    crb = cramer_rao_bounds(obs, problem, fiducial)
    log.done()

    log.start("write", f"writing results to {out}/")
    out.mkdir(parents=True, exist_ok=True)
    idata = result.idata
    idata.posterior.attrs.update(
        {"demo_spectrum": str(spec_path), "truth": json.dumps(truth_flat), "cramer_rao": json.dumps(crb)}
    )
    table = stamp_table(
        summary_table(idata, truth={k: v for k, v in truth_flat.items() if k in problem.names}), result.settings
    )
    result.summary = table
    result.write(out / "demo")
    rows = comparison_rows(table, truth_flat, crb)
    plots = {}
    for key, fn, kwargs in (("corner", plot_corner, {"truth": truth_flat}), ("fit", plot_fit, {})):
        path = out / f"demo_{key}.png"
        try:
            import matplotlib.pyplot as plt

            fig = fn(idata, path=path, **kwargs)
            plt.close(fig)
            plots[key] = str(path)
        except Exception as exc:  # a plot must not lose the numbers
            log.note(f"warning: the {key} plot failed ({type(exc).__name__}: {exc})")
    settings = result.settings
    report = {
        "demo_spectrum": str(spec_path),
        "truth_file": str(truth_path),
        "emulator": str(emulator),
        "emulator_kind": settings["emulator_kind"],
        "sampler": sampler,
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "seed": seed,
        "run_id": settings["run_id"],
        "input_sha256": settings["input_sha256"],
        "continuum": settings["continuum"],
        "crop_margin_kms": settings["crop_margin_kms"],
        "fixed": settings["held"],
        "map": map_result.params,
        "rows": rows,
        "cramer_rao": crb,
        "n_divergent": posterior.n_divergent,
        "flags": table.meta.get("FLAGS", ""),
        "chi2_reduced": table.meta.get("CHI2RED"),
        "timings_s": {
            "sampler": result.timings.get("sampling_s"),
            **result.timings,
            "total": time.perf_counter() - t_all,
        },
        "plots": plots,
        "machine": machine_info(),
    }
    write_json_atomic(out / "demo_report.json", report)
    log.done()

    click.echo("")
    click.echo(format_rows(rows))
    click.echo("")
    m = table.meta
    click.echo(
        f"method={m.get('METHOD')}  chains={m.get('NCHAINS')}  draws={m.get('NDRAWS')}  "
        f"reduced chi2={m.get('CHI2RED', math.nan):.3f}  divergences={m.get('NDIVERG')}  flags={footer_flags(table)}"
    )
    if "sd_sys" in table.colnames:
        click.echo(SD_SYS_EXPLAINED)
    click.echo(
        f"pull = (median − truth)/sd; CRB = marginal Cramér–Rao bound at the truth (each label's box as a prior, as in "
        f"the fit); sd/CRB ≈ 1 means the "
        f"posterior is as tight as the data allow.  Total {time.perf_counter() - t_all:.0f} s."
    )
    click.echo(
        f"wrote {out / 'demo.nc'}, {out / 'demo_summary.fits'}, {out / 'demo_summary.csv'}, "
        f"{out / 'demo_report.json'}" + "".join(f", {p}" for p in plots.values())
    )
