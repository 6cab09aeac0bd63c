"""``stellarinf crb``: Cramér–Rao precision forecast for a star observed with an instrument."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import click

from ..errors import StellarinfError
from ..observe.error_scale import ERROR_SCALE_MODES

EXIT_BAD_INPUT = 3
SNR_GRID = (10.0, 20.0, 30.0, 50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)


class BadInput(click.ClickException):
    """A message naming the problem, exit code 3 (the CLI's 'bad input')."""

    exit_code = EXIT_BAD_INPUT


def _parse_labels(labels: tuple[str, ...], flags: dict[str, float | None]) -> dict[str, float]:
    out: dict[str, float] = {}
    for text in labels:
        if "=" not in text:
            raise BadInput(f"--label {text!r}: write NAME=VALUE, e.g. --label mg_fe=0.1")
        name, value = text.split("=", 1)
        name = name.strip().lower()
        try:
            out[name] = float(value)
        except ValueError:
            raise BadInput(f"--label {text!r}: {value!r} is not a number") from None
        if not math.isfinite(out[name]):
            raise BadInput(f"--label {text!r}: the value must be finite")
    for name, value in flags.items():
        if value is None:
            continue
        if name in out and out[name] != value:
            raise BadInput(
                f"{name} given twice with different values (--{name} {value:g} and --label {name}={out[name]:g})"
            )
        out[name] = float(value)
    return out


def _parse_priors(priors: tuple[str, ...]) -> tuple[dict[str, float], bool]:
    """({name: σ} of the Gaussian priors, whether ``--prior box`` asked for the box as every other label's prior)."""
    from ..inference.priors import GAUSSIAN, parse_prior

    out, box = {}, False
    for text in priors:
        if text.strip().lower() == "box":
            box = True
            continue
        req = parse_prior(text)
        if req.kind != GAUSSIAN:
            raise BadInput(f"--prior {text!r}: Cramér–Rao forecasts take Gaussian priors only; write NAME=MEAN+-SIGMA")
        out[req.name] = req.b
    return out, box


def _split(text: str) -> list[str]:
    text = (text or "").strip()
    if text.lower() in ("", "none"):
        return []
    return [t.strip() for t in text.split(",") if t.strip()]


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "inf"
    return f"{x:.4g}"


def format_table(result) -> str:
    """Human-readable table of bounds."""
    from ..fisher import _unit

    marg, cond = result.marginal(), result.conditional()
    rows = [("label", "value", "marginal", "conditional", "unit")]
    for n, v in zip(result.names, result.values):
        rows.append((n, f"{v:.6g}", _fmt(marg[n]), _fmt(cond[n]), _unit(n)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(c.rjust(w) if i in (1, 2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _parse_snrs(text: str) -> list[float]:
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise BadInput(
                f"--snr {text!r}: {part!r} is not a number (write e.g. --snr 100 or --snr 20,50,100)"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise BadInput(f"--snr must be positive numbers, got {part!r}")
        out.append(value)
    if not out:
        raise BadInput("--snr is empty: give a positive number, e.g. --snr 100")
    return out


def format_snr_table(table, names) -> str:
    """Marginal bounds, one row per label and one column per S/N."""
    snrs = [f"S/N {s:g}" for s in table["snr"]]
    rows = [("label", *snrs)] + [(n, *(_fmt(v) for v in table[f"marginal_{n}"])) for n in names]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_floor(floor: dict, snr: float) -> str:
    """The emulator's systematic floor beside the bounds, and the labels it already limits at this S/N."""
    return _format_beside(
        floor,
        snr,
        "sd_sys",
        "emulator systematic floor sd_sys (and the S/N above which it exceeds the photon-noise bound; photons "
        "beyond it do not help): ",
        "sd_sys, not the noise, limits",
    )


def format_physics_floor(floor: dict, snr: float) -> str:
    """The real-star floor beside the bounds (the physics label floor a fit of a real star reports), and the labels
    it already limits at this S/N."""
    return _format_beside(
        floor,
        snr,
        "sd_phys",
        "real-star floor sd_phys, measured on the observed Sun through these models (a lower bound for stars unlike "
        "the Sun; and the S/N above which it exceeds the photon-noise bound): ",
        "the physics, not the noise, limits a real star's",
    )


def _format_beside(floor: dict, snr: float, key: str, lead: str, limits: str) -> str:
    """``lead`` and each label's ``key`` value with the S/N where it dominates; a line naming those it limits at
    ``snr``."""
    parts = [f"{n} {v[key]:.3g} (S/N {v['snr_floor_dominates']:.0f})" for n, v in floor.items()]
    limited = [n for n, v in floor.items() if v["snr_floor_dominates"] < snr]
    text = lead + ", ".join(parts)
    if limited:
        text += f"\nat S/N {snr:g} {limits} {', '.join(limited)}"
    return text


def describe_error_model(meta: dict) -> str:
    """The noise the bounds assume, in words (``meta["error_model"]`` of a forecast)."""
    kind = meta.get("error_model", "none")
    scales = (meta.get("error_scale") or {}).get("scales")
    at_star = (
        " scaled to this star (" + ", ".join("table" if s is None else f"×{s:.2f}" for s in scales) + ")"
        if scales
        else ""
    )
    if kind == "modes":
        return (
            f"noise: photon noise + the emulator's error{at_star} as a fit's likelihood has it "
            f"({meta['n_error_modes']} correlated modes + white remainder)"
        )
    if kind == "white":
        return (
            f"noise: photon noise + the emulator's error{at_star}, white per pixel (it has no correlated modes in use)"
        )
    return "noise: photon noise only (--emulator-error adds the emulator's)"


def describe_priors(sigmas: dict[str, float], box: bool, given: dict[str, float]) -> str:
    """The Gaussian priors in the bounds, in words: those given by name, and the box's for the rest."""
    named = ", ".join(f"{n} σ {sigmas[n]:.3g}" for n in given if n in sigmas)
    rest = [n for n in sigmas if n not in given]
    parts = [named] if named else []
    if box and rest:
        parts.append(f"each other label its box's uniform sd, width/√12 ({len(rest)} labels)")
    return "priors: " + "; ".join(parts)


def format_emulator_floor(floor: dict, snr: float) -> str:
    """The emulator error's floor in the bounds (S/N → ∞), and the S/N above which it exceeds the photon bound."""
    shown = {n: v for n, v in floor.items() if not n.startswith("cont_")}
    parts = [f"{n} {v['floor']:.3g} (S/N {v['snr_floor_dominates']:.0f})" for n, v in shown.items()]
    limited = [n for n, v in shown.items() if v["snr_floor_dominates"] < snr]
    text = (
        "emulator error floor (the bound as S/N → ∞, and the S/N above which the photon-noise bound is below it; "
        "more photons beyond it do not help): " + ", ".join(parts)
    )
    if limited:
        text += f"\nat S/N {snr:g} the emulator's error, not the noise, limits {', '.join(limited)}"
    return text


def _list_presets(model) -> None:
    from .. import forecast as fc_mod
    from ..instruments import presets_table

    if model == "synth":
        pairs = [(rng, None) for rng in fc_mod.model_coverage("synth")]
    else:  # each model's range with its own R (several with "auto")
        base = fc_mod.resolve_models(model)
        pairs = sorted(
            (fc_mod.model_coverage(m)[0], getattr(m, "resolution", None))
            for m in (base if isinstance(base, list) else [base])
        )
    ranges, limits = [p[0] for p in pairs], [None if r is None else float(r) for _, r in pairs]
    table = presets_table(ranges, limits)
    click.echo(
        f"{len(set(table['preset']))} presets; model {model} covers "
        + ", ".join(f"{lo:.0f}–{hi:.0f}" + (f" at R ≤ {r:,.0f}" if r else "") for (lo, hi), r in pairs)
        + " Å (vacuum)"
    )
    for row in table:
        click.echo(
            f"  {row['preset']:<15} {row['arm']:<22} {row['wmin']:8.1f}–{row['wmax']:<8.1f} R {row['resolution']:>9,.0f}  "
            f"covered: {row['covered']:<28} {row['source']}"
        )


@click.command(name="crb")
@click.option(
    "--emulator",
    "model",
    default="default",
    show_default=True,
    help="Forward model: an emulator name (default, default-payne) or model directory, 'auto' (each arm of the "
    "preset through the shipped emulator of its window: GALAH's four arms and Gaia RVS), 'broad' or 'broad-tp' (the "
    "same through the broad-domain Paynes (four GALAH arms and Gaia RVS) or TransformerPaynes (the GALAH arms): 35 "
    "labels, every GALAH element), or 'synth' for the synthesizer (ground truth).",
)
@click.option("--teff", type=float, default=None, help="Effective temperature [K].")
@click.option("--logg", type=float, default=None, help="Surface gravity log g [dex].")
@click.option("--feh", type=float, default=None, help="[Fe/H] [dex].")
@click.option("--vmic", type=float, default=None, help="Microturbulence [km/s].")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any label of the model, e.g. --label mg_fe=0.1 (repeatable). Unset labels take the box middle.",
)
@click.option("--rv", type=float, default=0.0, show_default=True, help="Fiducial radial velocity [km/s].")
@click.option("--vsini", type=float, default=2.0, show_default=True, help="Fiducial v sin i [km/s].")
@click.option("--vmacro", type=float, default=3.0, show_default=True, help="Fiducial macroturbulence [km/s].")
@click.option(
    "--star",
    default=None,
    help="A reference star by name (solar-twin, metal-poor-turn-off, red-clump, metal-poor-giant, k-dwarf, ...); "
    "--teff/--logg/--feh/--label override its labels.",
)
@click.option(
    "--snr",
    "snr_text",
    default="100",
    show_default=True,
    help="S/N per pixel at the continuum; several (comma-separated, e.g. 20,50,100,200) give one column each "
    "(one Jacobian, rescaled).",
)
@click.option(
    "--snr-mode",
    type=click.Choice(["constant", "photon"]),
    default="constant",
    show_default=True,
    help="Noise model: flat σ = 1/SNR or photon noise σ = sqrt(flux)/SNR.",
)
@click.option("--resolution", type=float, default=None, help="Resolving power (default: the window preset's).")
@click.option(
    "--preset",
    "--window",
    "window",
    default="galah-red",
    show_default=True,
    help="Instrument preset (galah, harps, giraffe-hr15n, 4most-hrs, ...; see --list-presets) or R=<value> "
    "(over the model's range) or R=<value>:<wmin>-<wmax>; cut to what the model covers.",
)
@click.option(
    "--list-presets",
    is_flag=True,
    default=False,
    help="List every instrument preset with its arms, sources and the part the model covers, and exit.",
)
@click.option(
    "--marginalize",
    default="rv,vsini,vmacro,continuum",
    show_default=True,
    help="Nuisances to marginalise (comma-separated subset of rv,vsini,vmacro,continuum,resolution, "
    "or 'none'); the others are held fixed.",
)
@click.option("--fix", "fix", default="", help="Labels to hold fixed (comma-separated), e.g. vmic.")
@click.option(
    "--elements",
    default=None,
    help="With --emulator synth: the elements whose [X/Fe] are labels (comma-separated symbols, e.g. "
    "C,O,Na,Mg,Eu, or a named set: galah, the 30 elements the four GALAH arms measure); default: the default label "
    "space's (Li,Al,Si,Ca,Ti,Ni,Ba).",
)
@click.option(
    "--alpha",
    is_flag=True,
    help="With --emulator synth: [α/Fe] is a label as well (α-enhanced ATLAS9 atmospheres; reference stars take "
    "their class's [α/Fe], e.g. +0.4 for the halo).",
)
@click.option(
    "--prior",
    "priors",
    multiple=True,
    metavar="NAME=MEAN+-SIGMA|box",
    help="Gaussian prior, e.g. --prior logg=4.4+-0.1 (repeatable); adds 1/σ² to the Fisher matrix. --prior box: "
    "every other free label gets its model box's uniform sd, (upper − lower)/√12, as a fit's box prior acts (with many "
    "weakly constrained labels the bounds without it are too wide).",
)
@click.option(
    "--emulator-error/--no-emulator-error",
    default=False,
    show_default=True,
    help="Include the model's own error in the noise, as a fit's likelihood does (see --emulator-error-model); "
    "the bounds then stop falling as 1/(S/N) at the emulator's floor.",
)
@click.option(
    "--emulator-error-model",
    type=click.Choice(["modes", "white"]),
    default="modes",
    show_default=True,
    help="With --emulator-error: modes = its correlated error modes on the forecast's pixels + the white remainder "
    "(as `fit --emulator-error modes`); white = its whole error added in quadrature per pixel.",
)
@click.option(
    "--error-scale",
    type=click.Choice(ERROR_SCALE_MODES),
    default="star",
    show_default=True,
    help="With --emulator-error: star = the emulator's error scaled to this star where it measured how its error "
    "varies over its box (as `fit --error-scale star`; the broad sets); box = its error table as measured.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write bounds-vs-S/N, information-per-pixel, correlation and gradient-spectra plots to this folder.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the forecast as JSON.")
def crb(
    model,
    teff,
    logg,
    feh,
    vmic,
    labels,
    star,
    rv,
    vsini,
    vmacro,
    snr_text,
    snr_mode,
    resolution,
    window,
    list_presets,
    marginalize,
    fix,
    elements,
    alpha,
    priors,
    emulator_error,
    emulator_error_model,
    error_scale,
    plots_dir,
    output,
):
    """Cramér–Rao precision forecast: the best possible label uncertainties for a star, instrument and S/N.

    \b
    Example:
      stellarinf crb --teff 5772 --logg 4.44 --feh 0 --snr 100 -o crb.json
      stellarinf crb --emulator synth --window gaia-rvs --prior logg=4.4+-0.05 --plots plots/
      stellarinf crb --preset giraffe-hr15n --star red-clump --snr 20,50,100,200
      stellarinf crb --emulator synth --preset galah --star solar-twin --elements C,O,Na,Mg,Eu
      stellarinf crb --emulator synth --preset galah --star metal-poor-giant --alpha
      stellarinf crb --list-presets
    """
    from .. import forecast as fc_mod
    from ..labels import parse_elements

    try:
        if list_presets:
            _list_presets(model)
            return
        snrs = _parse_snrs(snr_text)
        snr = snrs[0]
        given = _parse_labels(labels, {"teff": teff, "logg": logg, "feh": feh, "vmic": vmic})
        if star is not None:
            from ..reference_stars import star_labels

            has_alpha = alpha
            if not alpha and model != "synth":
                resolved = fc_mod.resolve_models(model)
                first = resolved[0] if isinstance(resolved, list) else resolved
                has_alpha = "alpha_fe" in first.label_space.names
            given = star_labels(star, given, alpha=has_alpha)
        star_values = given
        prior_sigma, box_prior = _parse_priors(priors)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fc = fc_mod.forecast(
                model,
                star_values,
                window=window,
                snr=snr,
                snr_mode=snr_mode,
                resolution=resolution,
                nuisances={"rv": rv, "vsini": vsini, "vmacro": vmacro},
                marginalize=_split(marginalize),
                fix=_split(fix),
                elements=None if elements is None else parse_elements(elements),
                alpha=alpha,
                priors=prior_sigma,
                box_prior=box_prior,
                emulator_error=emulator_error_model if emulator_error else False,
                error_scale=error_scale,
                model_name=str(model),
            )
            result = fc.result
            result.marginal()
        for w in caught:
            click.secho(f"warning: {w.message}", fg="yellow", err=True)
        doc = result.to_json()
        doc["warnings"] = [str(w.message) for w in caught]
        arms = "; ".join(
            f"{a.name} {a.wmin:.0f}–{a.wmax:.0f} Å R {a.resolution:,.0f} ({s.stop - s.start} px)"
            for a, s in zip(fc.instrument.arms, fc.arm_slices)
        )
        click.echo(
            f"Cramér–Rao bounds: model {model}, preset {fc.instrument.name} ({arms}), S/N {snr:g} ({snr_mode})"
            + (f", star {star}" if star else "")
        )
        if result.meta.get("arms_not_covered"):
            click.echo("not served by the model(s), left out: " + "; ".join(result.meta["arms_not_covered"]))
        click.echo(describe_error_model(result.meta))
        if result.prior_sigma:
            click.echo(describe_priors(result.prior_sigma, result.meta.get("box_prior", False), prior_sigma))
        click.echo(format_table(result))
        if len(snrs) > 1:
            from ..forecast import bounds_vs_snr

            scan = bounds_vs_snr(fc, snrs)
            click.echo("\nmarginal bounds at each S/N (same Jacobian and error model):")
            click.echo(format_snr_table(scan, result.names))
            doc["snr_scan"] = {
                "snr": [float(x) for x in snrs],
                "marginal": {n: [float(v) for v in scan[f"marginal_{n}"]] for n in result.names},
            }
        click.echo(
            f"marginalised: {', '.join(doc['marginalized']) or 'none'}; "
            f"condition number {_fmt(result.condition_number)}"
        )
        floor = fc_mod.systematic_floor(fc)
        if floor:
            doc["systematic_floor"] = floor
            click.echo(format_floor(floor, snr))
        phys_floor = fc_mod.physics_floor(fc)
        if phys_floor:
            doc["physics_floor"] = phys_floor
            click.echo(format_physics_floor(phys_floor, snr))
            from ..observe.physics_error import unlike_sun_note

            # a star far from the Sun: that floor is a lower bound for it
            unlike = unlike_sun_note(fc.params, reads="sd_phys (and a fit's sd_total)")
            if unlike:
                doc["physics_floor_note"] = unlike
                click.echo(unlike)
        emu_floor = fc_mod.emulator_floor(fc)
        if emu_floor:
            doc["emulator_floor"] = emu_floor
            click.echo(format_emulator_floor(emu_floor, snr))
        from ..emulator_fidelity import format_fidelity

        fidelity_line = format_fidelity(result.meta.get("emulator_fidelity"))
        if fidelity_line:
            click.echo(fidelity_line)
        if plots_dir is not None:
            doc["plots"] = _write_plots(fc, Path(plots_dir))
            click.echo(f"plots written to {plots_dir}")
        if output is not None:
            from ..io.atomic import write_json_atomic

            write_json_atomic(output, doc)
            click.echo(f"wrote {output}")
    except BadInput:
        raise
    except StellarinfError as exc:
        raise BadInput(str(exc)) from exc


def _write_plots(fc, folder: Path) -> dict[str, str]:
    from .. import fisher_plots as fp
    from ..forecast import bounds_vs_snr
    from ..inference.results import is_continuum

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    # the labels and rv / v sin i / v macro: a panel per continuum coefficient (12 of them for four arms) would
    # bury the labels a planner looks for; the table below keeps every parameter
    shown = [n for n in fc.result.names if not is_continuum(n)]
    table = bounds_vs_snr(fc, SNR_GRID)
    fp.plot_bounds_vs_snr(table, shown, path=folder / "bounds_vs_snr.png")
    out["bounds_vs_snr"] = str(folder / "bounds_vs_snr.png")
    fp.plot_information_per_pixel(fc.result, shown, flux=fc.flux, path=folder / "information_per_pixel.png")
    out["information_per_pixel"] = str(folder / "information_per_pixel.png")
    fp.plot_correlation(fc.result, shown, path=folder / "correlation.png")
    out["correlation"] = str(folder / "correlation.png")
    fp.plot_gradient_spectra(fc, path=folder / "gradient_spectra.png")
    out["gradient_spectra"] = str(folder / "gradient_spectra.png")
    import io

    from ..io.atomic import write_bytes_atomic

    buf = io.StringIO()
    table.write(buf, format="ascii.ecsv")
    write_bytes_atomic(folder / "bounds_vs_snr.ecsv", buf.getvalue().encode())
    out["bounds_vs_snr_table"] = str(folder / "bounds_vs_snr.ecsv")
    return out
