"""Joint fits of many stars sharing nuisances: ``stellarinf.fit_joint`` (the CLI's ``stellarinf fit --joint``).

Stages: **read** every spectrum (paths or :class:`~stellarinf.io.spectrum.Spectrum` objects) and check the request
(at least 2 stars, shareable names, a starting resolving power when it is shared) before the model loads; **load**
the emulator(s) (one label space for all stars), crop each spectrum to the model and build one
:class:`~stellarinf.observe.model.ObservationModel` per star, all with the same options (so they stack);
**stars alone**: each star's own MAP + Laplace with the shared parameters free for it alone (the starting point,
and what each star says about a shared value by itself); **joint mode**: damped Newton steps on the joint
posterior from there (:func:`~stellarinf.inference.joint.joint_laplace`) and its Laplace approximation;
**sampling**: NumPyro NUTS on the plate model (:func:`~stellarinf.inference.joint.run_joint_nuts`) with that
approximation as its dense metric; then the ArviZ ``InferenceData`` (a ``star`` dimension), the per-star and
shared summaries and the diagnostics.

Defaults shared with :func:`stellarinf.fit_spectrum` come from :mod:`stellarinf.pipeline` (continuum
``"marginalise"``, crop margin, MAP starts, fixed-value checks, physics error, telluric masks).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StellarinfError
from .io.validate import validate_for_fit
from .observe.error_scale import check_error_scale_mode, table_kept_note
from .pipeline import (
    DEFAULT_CONTINUUM,
    DEFAULT_EMULATOR,
    DEFAULT_SAMPLER_MINUTES,
    DEFAULT_STARTS,
    StageLog,
    _json_default,
    _physics_setting,
    _prior_texts,
    _spectrum_id,
    _unlike_sun_row,
    _version,
    auto_continuum_degree,
    crop_margin_kms,
    emulator_kind,
    load_model,
    mask_telluric_bands,
    output_prefix,
    physics_ranges_left_out,
    physics_ranges_note,
    prior_requests,
    read_input,
    resolve_physics_error,
    validate_fixed,
)

JOINT_SAMPLERS = ("nuts", "laplace")
RHAT_MAX = 1.01
ESS_MIN = 100


@dataclasses.dataclass
class JointFitResult:
    """What :func:`fit_joint` returns.

    Attributes:
        idata: ArviZ ``InferenceData``; ``posterior`` holds every per-star parameter with dims
            ``(chain, draw, star)`` and every shared one with ``(chain, draw, <name>_group)``; coordinates are the
            star ids and the group keys; ``posterior.attrs`` the settings (JSON), run id and input checksums.
        stars: astropy ``Table``, one row per star: ``star``, ``input_file``, ``input_sha256``, per parameter
            ``<name>`` (median), ``<name>_err`` (sd), ``<name>_p16``/``_p84``, ``<name>_r_hat``,
            ``<name>_ess``, and ``r_hat_max``, ``ess_bulk_min``, ``chi2_reduced`` (at the posterior medians).
        shared: astropy ``Table``, one row per shared parameter and group: ``name``, ``group``, ``n_stars``,
            ``mean``, ``sd``, ``p16``, ``p50``, ``p84``, ``r_hat``, ``ess_bulk``, ``ess_tail``, ``lower``,
            ``upper``, and ``alone_p50``/``alone_sd_min`` (what the group's stars alone said: their Laplace
            medians' median and the smallest single-star sd).
        alone: per star, its own MAP + Laplace (shared parameters free for it alone): name → (value, sd).
        settings, diagnostics (``r_hat_max``, ``ess_bulk_min``, ``n_divergent``, ``unreliable``, ``advice``),
        timings (seconds per stage), problem (the :class:`~stellarinf.inference.joint.JointProblem`),
        posterior (the raw draws), laplace (the joint Laplace approximation).
    """

    idata: Any
    stars: Any
    shared: Any
    alone: list
    settings: dict
    diagnostics: dict
    timings: dict
    problem: Any = None
    posterior: Any = None
    laplace: Any = None

    @property
    def run_id(self) -> str:
        return self.settings["run_id"]

    @property
    def unreliable(self) -> list[str]:
        return list(self.diagnostics.get("unreliable", []))

    def write(self, prefix) -> list[Path]:
        """Write ``PREFIX.nc`` (InferenceData), ``PREFIX_stars.fits/.csv`` and ``PREFIX_shared.fits/.csv`` as one
        set (:func:`stellarinf.io.atomic.atomic_file_set`: all to temporaries, then renamed into place; a kill
        never leaves a mix of two runs). Every file carries the run id. Returns the paths written."""
        from .inference.results import write_inference_data_to, write_table_to
        from .io.atomic import atomic_file_set, remove_stale_temporaries

        prefix = output_prefix(prefix)
        paths = {
            "nc": prefix.with_name(prefix.name + ".nc"),
            "stars_fits": prefix.with_name(prefix.name + "_stars.fits"),
            "stars_csv": prefix.with_name(prefix.name + "_stars.csv"),
            "shared_fits": prefix.with_name(prefix.name + "_shared.fits"),
            "shared_csv": prefix.with_name(prefix.name + "_shared.csv"),
        }
        for p in paths.values():
            remove_stale_temporaries(p)
        meta = {
            "RUNID": self.settings["run_id"],
            "EMULATOR": str(self.settings.get("emulator", "")),
            "SAMPLER": str(self.settings.get("sampler", "")),
            "SHARED": ",".join(self.settings.get("share", [])),
            "SETTINGS": json.dumps(self.settings, default=_json_default, sort_keys=True),
        }
        tables = {}
        for key, table in (("stars", self.stars), ("shared", self.shared)):
            t = table.copy(copy_data=False)
            t.meta.update(meta)
            c = t.copy()
            c["run_id"] = self.settings["run_id"]
            tables[key] = (t, c)
        with atomic_file_set(list(paths.values())) as tmp:
            write_inference_data_to(self.idata, tmp[paths["nc"]])
            for key in ("stars", "shared"):
                write_table_to(tables[key][0], tmp[paths[f"{key}_fits"]], "fits")
                write_table_to(tables[key][1], tmp[paths[f"{key}_csv"]], "ascii.csv")
        return list(paths.values())


def _check_request(spectra, share, sampler, chains, draws, warmup, n_starts) -> tuple[str, ...]:
    from .inference.joint import SHAREABLE, JointError

    if isinstance(spectra, (str, os.PathLike)) or not isinstance(spectra, Sequence):
        spectra = [spectra]
    if len(spectra) < 2:
        raise JointError(
            f"a joint fit needs at least 2 stars, got {len(spectra)}; fit one star with stellarinf.fit_spectrum "
            "(CLI: stellarinf fit without --joint)"
        )
    if isinstance(share, str):
        share = (share,)
    share = tuple(dict.fromkeys(str(s).strip().lower() for s in share))
    if not share:
        raise JointError(f"nothing to share: name at least one of {', '.join(SHAREABLE)} (e.g. share=('resolution',))")
    unknown = [s for s in share if s not in SHAREABLE]
    if unknown:
        raise JointError(
            f"cannot share {', '.join(map(repr, unknown))}: not a nuisance parameter of a stellarinf fit; the parameters "
            f"that can be shared are {', '.join(SHAREABLE)} (labels are per star; ln_jitter needs jitter=True)"
        )
    if sampler not in JOINT_SAMPLERS:
        raise JointError(f"joint fits run sampler {' or '.join(map(repr, JOINT_SAMPLERS))}, got {sampler!r}")
    if chains < 1 or draws < 1 or warmup < 0 or n_starts < 1:
        raise JointError(
            f"need chains >= 1, draws >= 1, warmup >= 0 and n_starts >= 1 (got {chains}, {draws}, {warmup}, {n_starts})"
        )
    return share


def _models_for(emulator, n: int) -> tuple[list, list[str]]:
    """One model per star: ``emulator`` is one name/path/object for all, or a sequence of one per star, which must
    all have the same label space."""
    from .inference.joint import JointError

    if isinstance(emulator, (list, tuple)):
        if len(emulator) != n:
            raise JointError(f"{len(emulator)} emulators for {n} spectra; give one emulator, or one per spectrum")
        loaded, cache = [], {}
        for e in emulator:
            key = str(e) if isinstance(e, (str, os.PathLike)) else id(e)
            if key not in cache:
                cache[key] = load_model(e)
            loaded.append(cache[key])
        labels = [
            str(e) if isinstance(e, (str, os.PathLike)) else type(e).__name__ for e in emulator
        ]  # for messages and settings
    else:
        model = load_model(emulator)
        loaded = [model] * n
        labels = [str(emulator) if isinstance(emulator, (str, os.PathLike)) else type(emulator).__name__] * n
    names0 = tuple(loaded[0].label_space.names)
    for i, m in enumerate(loaded[1:], start=1):
        names = tuple(m.label_space.names)
        if names != names0:
            raise JointError(
                f"star {i} ({labels[i]}) has labels ({', '.join(names)}) but star 0 ({labels[0]}) has "
                f"({', '.join(names0)}): a joint fit needs one label space; fit all stars with the same emulator"
            )
        if m is not loaded[0] and (
            tuple(map(float, m.wavelength_range)) != tuple(map(float, loaded[0].wavelength_range))
            or getattr(m, "resolution", None) != getattr(loaded[0], "resolution", None)
        ):
            raise JointError(
                f"star {i} uses a different emulator ({labels[i]}: {m.wavelength_range}, R {m.resolution}) than star 0 "
                f"({labels[0]}); a joint fit evaluates every star with one model: pass one emulator for all stars"
            )
    return loaded, labels


def fit_joint(
    spectra: Sequence,
    *,
    emulator=DEFAULT_EMULATOR,
    share: Sequence[str] | str = ("resolution",),
    groups: Sequence | Mapping[str, Sequence] | None = None,
    ids: Sequence[str] | None = None,
    sampler: str = "nuts",
    priors=None,
    fixed: Mapping[str, float] | None = None,
    resolution: float | None = None,
    resolution_bounds: tuple[float, float] | None = None,
    continuum: str = DEFAULT_CONTINUUM,
    continuum_degree: int | str = "auto",
    rv_max: float = 300.0,
    vsini_max: float = 60.0,
    vmacro_max: float = 15.0,
    emulator_error: str = "modes",
    error_scale: str = "star",
    jitter: bool = False,
    chains: int = 4,
    warmup: int = 300,
    draws: int = 500,
    n_starts: int = DEFAULT_STARTS,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], Any] | None = None,
    read_options: Mapping | None = None,
    physics_error="auto",
    mask_tellurics: bool = True,
    emulator_name: str | None = None,
    nuts_options: Mapping[str, Any] | None = None,
    star_map: str | None = None,
    max_minutes: float | None = DEFAULT_SAMPLER_MINUTES,
) -> JointFitResult:
    """Fit many stars at once, with chosen nuisance parameters shared across them (or across groups of them).

    Labels, ``rv``, ``vsini`` and ``vmacro`` stay per star; each name in ``share`` gets one value per group, e.g.
    one resolving power for all stars observed through one fibre plate. Every star's likelihood is the single-star
    one of :func:`stellarinf.fit_spectrum`; the joint posterior multiplies them (a ``numpyro.plate`` over stars).

    Args:
        spectra: two or more file paths and/or ``stellarinf.Spectrum`` objects (vacuum Å; see ``fit_spectrum``).
            Spectra on one pixel grid are evaluated together in one compiled program (the fast case).
        emulator: one model for all stars (``"default-payne"``, ``"default"``, a directory or a model object),
            or a sequence of one per star, all with the same label space.
        share: parameter names shared across stars: ``"resolution"`` (the instrument's resolving power R, fitted;
            needs a starting R: ``resolution=`` or the files' headers), ``"rv"``, ``"vsini"``, ``"vmacro"``,
            ``"ln_jitter"`` (with ``jitter=True``).
        groups: None (one value for all stars), a per-star sequence of keys (one value per distinct key, for every
            shared name: e.g. the fibre plate or the night of each star), or a mapping shared name → keys.
        ids: names of the stars in the outputs (default: file names, or ``star_<i>``).
        sampler: ``"nuts"`` (NumPyro NUTS on the plate model) or ``"laplace"`` (draws of the joint Laplace
            approximation: seconds, no MCMC diagnostics).
        priors: overrides of the uniform priors, applied to every star (and to the shared values), e.g.
            ``["logg=4.4+-0.1"]`` or ``["resolution=18000:26000"]``.
        fixed: parameters held fixed for every star, e.g. ``{"vmacro": 0.0}``; a shared name cannot be fixed.
        resolution: the starting (or, when not shared, the fixed) resolving power for every star; default: each
            file's. ``resolution_bounds``: the box of a shared R (default 0.5–1.5 × the start, at most the model's R).
        continuum, continuum_degree, rv_max, vsini_max, vmacro_max, emulator_error, jitter, physics_error,
            mask_tellurics, read_options: as for :func:`stellarinf.fit_spectrum` (``continuum_degree="auto"``
            takes the largest of the stars' automatic degrees, so that all stars share one model structure).
            ``error_scale``: accepted for the same options as ``fit_spectrum``, but a joint fit keeps the emulator's
            error table as measured (it has no per-star second MAP to scale it at), with a note where that matters.
        chains, warmup, draws: NUTS size per chain; ``n_starts``: MAP starts per star alone; ``seed``.
        progress: NUTS's progress bar; ``log``: a callable taking a line (``print``) for the stages and times.
        max_minutes: NUTS's wall-clock budget (warm-up included; None = none): when its steps so far project past it,
            NUTS stops and the fit draws from the joint Laplace approximation instead, saying so in the log,
            ``settings["sampler_fallback"]`` and ``diagnostics["warnings"]`` (as :func:`stellarinf.fit_spectrum`).
        nuts_options: more keywords of :func:`~stellarinf.inference.joint.run_joint_nuts` (``pilot``, ``chunk``,
            ``time_budget_s``, ``checkpoint``, ``target_accept``, ``max_tree_depth``, ``init_scale``); its ``log``
            is ``log``.
        star_map: how the stacked stars are evaluated: ``"map"`` (default on a CPU), ``"vmap"`` (default on
            accelerators) or ``"unroll"`` (on a CPU ~17 % less time per gradient, 4× longer to compile); see
            :mod:`stellarinf.inference.joint`.

    Returns:
        :class:`JointFitResult`: ``stars`` (one row per star), ``shared`` (one row per shared value),
        ``idata`` (ArviZ, with a ``star`` dimension), ``diagnostics`` (R-hat, ESS, divergences; ``unreliable``)
        and ``write(prefix)``.

    Raises:
        StellarinfError: fewer than 2 stars, a shared name that is not a nuisance (the message lists the valid
        ones), stars with different label spaces or emulators, a shared resolution without a starting value,
        a shared name also fixed, plus every single-star input error.

    Example::

        >>> import stellarinf
        >>> res = stellarinf.fit_joint(["a.fits", "b.fits", "c.fits"], emulator="default-payne",
        ...                            share=("resolution",), groups=["plate1", "plate1", "plate2"])
        >>> print(res.shared)                       # one R per plate, with its sd and R-hat
        >>> print(res.stars["star", "teff", "teff_err", "logg", "logg_err"])
        >>> res.write("joint")                      # joint.nc, joint_stars.fits/.csv, joint_shared.fits/.csv
    """
    from . import enable_float64
    from .inference.density import Problem
    from .inference.joint import JointError, JointProblem, joint_laplace, laplace_draws, run_joint_nuts
    from .inference.laplace import laplace
    from .inference.map import find_map
    from .inference.samplers import SamplerBudgetExceeded
    from .io.spectrum import crop_to_model
    from .observe.model import ObservationModel

    enable_float64()
    t_start = time.perf_counter()
    share = _check_request(spectra, share, sampler, chains, draws, warmup, n_starts)
    spectra = list(spectra)
    n = len(spectra)
    if continuum not in ("marginalise", "sample", "profile"):
        raise StellarinfError(f"continuum must be 'marginalise', 'sample' or 'profile', got {continuum!r}")
    if emulator_error not in ("modes", "white"):
        raise StellarinfError(f"emulator_error must be 'modes' or 'white', got {emulator_error!r}")
    check_error_scale_mode(error_scale, StellarinfError)
    if "ln_jitter" in share and not jitter:
        raise JointError("share 'ln_jitter' needs jitter=True (CLI: --jitter); or drop it from the shared names")
    clash = [s for s in share if s in (fixed or {})]
    if clash:
        raise JointError(f"{', '.join(clash)} is both shared and fixed; choose one (drop it from share or from fixed)")
    ids = [_spectrum_id(s, i) for i, s in enumerate(spectra)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise JointError(f"{len(ids)} ids for {n} spectra; give one id per spectrum")
    if len(set(ids)) != n:
        ids = [f"{sid}_{i}" for i, sid in enumerate(ids)]
    if groups is not None and not isinstance(groups, Mapping) and len(list(groups)) != n:
        raise JointError(f"{len(list(groups))} group keys for {n} spectra; give one key per spectrum")
    prior_list = prior_requests(priors)
    stages = StageLog(log, total=6)

    stages.start("read", f"reading {n} spectra")
    specs, inputs = [], []
    for sid, item in zip(ids, spectra):
        try:
            spec, name, checksum = read_input(item, resolution=resolution, read_options=read_options)
            validate_for_fit(spec, 0)
        except StellarinfError as exc:
            raise type(exc)(f"star {sid}: {exc}") from None
        specs.append(spec)
        inputs.append({"input_file": name, "input_sha256": checksum})
    if "resolution" in share:
        missing = [sid for sid, s in zip(ids, specs) if s.resolution is None]
        if missing:
            raise JointError(
                f"a shared resolution is fitted from a starting value, and {len(missing)} spectra have none "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): pass resolution=R (CLI: --resolution R), "
                "the nominal resolving power of the instrument, or give the files a RESOLUTN header card"
            )
        profiled = [sid for sid, s in zip(ids, specs) if isinstance(s.resolution, np.ndarray)]
        if profiled and resolution is None:
            raise JointError(
                f"a shared resolution is one constant R fitted for all stars, but {len(profiled)} spectra give R per "
                f"pixel (R(λ): {', '.join(profiled[:5])}{', ...' if len(profiled) > 5 else ''}); pass resolution=R "
                "(CLI: --resolution R) to fit one constant R from that start instead, or do not share resolution "
                "(each star then keeps its own R(λ), held fixed)"
            )
    stages.done(f"{sum(s.n_pix for s in specs)} pixels in all")

    stages.start("load", "loading the emulator and building one observation model per star")
    models, model_labels = _models_for(emulator, n)
    kept = table_kept_note("a joint fit", error_scale, models)
    if kept:
        stages.note(kept)
    fixed_values = validate_fixed(fixed or {}, models[0], rv_max=rv_max, vsini_max=vsini_max, vmacro_max=vmacro_max)
    cropped, phys_by_star = [], []  # each star its own physics-error term (its spectrum's window)
    for sid, spec, model in zip(ids, specs, models):
        if mask_tellurics:
            spec, _ = mask_telluric_bands(spec)
        phys_by_star.append(resolve_physics_error(physics_error, spec, [model])[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cropped.append(crop_to_model(spec, model, margin_kms=crop_margin_kms(rv_max)))
    degree = max(auto_continuum_degree(s) for s in cropped) if continuum_degree == "auto" else int(continuum_degree)
    r_start = None
    if "resolution" in share:
        r_start = float(resolution) if resolution is not None else float(np.median([s.resolution for s in specs]))
    obs_fixed = {k: v for k, v in fixed_values.items() if k != "resolution"}
    left_out = {sid: physics_ranges_left_out(p, s.wavelength) for sid, p, s in zip(ids, phys_by_star, cropped)}
    note = physics_ranges_note(*left_out.values())
    if note:
        stages.note(note)
    obs_models = []
    for sid, spec, model, phys in zip(ids, cropped, models, phys_by_star):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                om = ObservationModel(
                    model,
                    spec,
                    resolution=r_start if r_start is not None else fixed_values.get("resolution", resolution),
                    fit_resolution="resolution" in share,
                    resolution_bounds=resolution_bounds,
                    continuum=continuum,
                    continuum_degree=degree,
                    fit_jitter=jitter,
                    rv_max=rv_max,
                    vsini_max=vsini_max,
                    vmacro_max=vmacro_max,
                    fixed=obs_fixed,
                    error_modes=emulator_error == "modes",
                    physics_error=phys,
                )
            validate_for_fit(spec, len(om.param_names))
        except StellarinfError as exc:
            raise type(exc)(f"star {sid}: {exc}") from None
        obs_models.append(om)
    problem = JointProblem.build(obs_models, share, groups, prior_list, star_map=star_map)
    stages.done(
        f"{n} stars × {problem.n_star_params} parameters + {sum(problem.n_groups)} shared "
        f"({', '.join(f'{s}: {g} group(s)' for s, g in zip(share, problem.n_groups))}); "
        f"{'stacked: one program for all stars' if problem.is_stacked else 'not stackable (grids differ): summed star by star'}"
    )

    stages.start("alone", f"each star alone: MAP ({n_starts} starts) + Laplace, shared parameters free")
    alone, per0 = [], {name: np.zeros(n) for name in problem.star_names}
    shared_vals = {name: [] for name in share}
    for i, om in enumerate(obs_models):
        single = Problem.build(om, prior_list)
        m = find_map(single, n_starts=n_starts, seed=seed + i)
        lap = laplace(single, m, seed=seed + i)
        sd = _sd_physical(single, lap)
        alone.append({name: (float(m.params[name]), float(sd[name])) for name in single.names})
        for name in problem.star_names:
            per0[name][i] = m.params[name]
        for name in share:
            shared_vals[name].append((m.params[name], sd[name]))
    shared0 = {}
    for j, name in enumerate(share):
        gi = np.asarray(problem.group_index[j])
        vals = np.array([v for v, _ in shared_vals[name]])
        w = 1.0 / np.maximum(np.array([s for _, s in shared_vals[name]]), 1e-12) ** 2
        shared0[name] = np.array(
            [np.sum(vals[gi == g] * w[gi == g]) / np.sum(w[gi == g]) for g in range(problem.n_groups[j])]
        )
    stages.done(
        "; ".join(
            f"{name} alone: {np.median([v for v, _ in shared_vals[name]]):.6g} (sd {min(s for _, s in shared_vals[name]):.3g}"
            f"–{max(s for _, s in shared_vals[name]):.3g})"
            for name in share
        )
    )

    stages.start("joint", "joint mode (Newton steps on per-star blocks) + Laplace")
    jl = joint_laplace(problem, problem.from_params(per0, shared0))
    stages.done(
        f"log density {jl.log_density:.1f} after {jl.n_newton} steps; Hessian "
        f"{'positive definite' if jl.hessian_ok else 'regularised'}"
    )

    stages.start(
        "sampling",
        f"{sampler}: {chains} chains × ({warmup} warm-up + {draws} draws), {problem.n_free} parameters"
        if sampler == "nuts"
        else f"laplace: {chains} × {draws} draws",
    )
    fallback = None
    if sampler == "nuts":
        try:
            post = run_joint_nuts(
                problem,
                jl,
                chains=chains,
                warmup=warmup,
                draws=draws,
                seed=seed,
                progress=progress,
                max_seconds=None if max_minutes is None else 60.0 * float(max_minutes),
                **{"log": log, **dict(nuts_options or {})},
            )
        except SamplerBudgetExceeded as exc:
            fallback = str(exc)
            stages.note(f"warning: {fallback}")
            stages.note(f"falling back to the joint Laplace draws: {chains} × {draws}")
            sampler = "laplace"
    if sampler == "nuts":
        stages.done(f"{post.n_divergent} divergences, {post.n_gradient_evals} gradients (sampling phase)")
    else:
        post = laplace_draws(problem, jl, chains=chains, draws=draws, seed=seed)
        moved = sum(int(r["ring_replaced"]) for r in post.tuning.get("ring", {}).values())
        stages.done(
            f"v sin i and v macro follow their ring (unresolved split) for {moved} of {len(ids)} stars" if moved else ""
        )

    label = emulator_name or model_labels[0]
    settings = {
        "run_id": uuid.uuid4().hex,
        "kind": "joint",
        "ids": ids,
        "inputs": dict(zip(ids, inputs)),
        "emulator": label,
        "emulator_kind": emulator_kind(models[0]),
        "sampler": sampler,
        "sampler_fallback": fallback,
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "share": list(share),
        "groups": {
            name: {ids[i]: problem.group_keys[j][int(g)] for i, g in enumerate(np.asarray(gi))}
            for j, (name, gi) in enumerate(zip(share, problem.group_index))
        },
        "chains": int(chains),
        "draws": int(post.n_draws),
        "nuts_options": {k: v for k, v in dict(nuts_options or {}).items() if not callable(v)},
        "warmup": int(warmup) if sampler == "nuts" else 0,
        "n_starts": int(n_starts),
        "seed": int(seed),
        "priors": {
            n_: p.to_json()
            for n_, p in zip(problem.star_names + problem.shared_names, problem.star_priors + problem.shared_priors)
        },
        "prior_requests": _prior_texts(priors),
        "fixed": fixed_values,
        "resolution_start": r_start,
        "resolution_bounds": dict(obs_models[0].default_bounds()).get("resolution"),
        "continuum": continuum,
        "continuum_degree": int(degree),
        "crop_margin_kms": crop_margin_kms(rv_max),
        "rv_max": float(rv_max),
        "vsini_max": float(vsini_max),
        "vmacro_max": float(vmacro_max),
        "emulator_error": emulator_error,
        "error_scale": {"mode": "box", "scales": None},  # no per-star second MAP to scale it at
        "jitter": bool(jitter),
        # per star: the physics-error term its likelihood used, and the ranges of it left out of the fit
        "physics_error": {sid: _physics_setting(p) for sid, p in zip(ids, phys_by_star)},
        "physics_ranges_left_out": left_out,
        "mask_tellurics": bool(mask_tellurics),
        "stacked": bool(problem.is_stacked),
        "star_map": problem.star_map,
        "read_options": {k: str(v) for k, v in (read_options or {}).items()},
        # per star: what the scan along its v sin i–v macro ring found (laplace draws; inference.ring)
        "ring": {ids[i]: info for i, info in post.tuning.get("ring", {}).items()},
        "stellarinf_version": _version(),
    }
    idata = joint_inference_data(post, problem, ids, settings)
    stars, shared_table = joint_summaries(idata, problem, ids, inputs, alone)
    diagnostics = joint_diagnostics(stars, shared_table, post)
    if fallback:
        diagnostics["warnings"] = [fallback]
    notes = {}  # per star, as fit_spectrum's: a star far from the Sun, whose physics error is not measured
    for row, phys in zip(stars, phys_by_star):
        note = _unlike_sun_row({c: row[c] for c in stars.colnames}, fixed_values) if phys is not None else None
        if note:
            notes[str(row["star"])] = note
            stages.note(f"{row['star']}: {note}")
    if notes:
        diagnostics["notes"] = notes
    timings = dict(stages.timings)
    timings["total_s"] = time.perf_counter() - t_start
    return JointFitResult(
        idata=idata,
        stars=stars,
        shared=shared_table,
        alone=alone,
        settings=settings,
        diagnostics=diagnostics,
        timings=timings,
        problem=problem,
        posterior=post,
        laplace=jl,
    )


def _sd_physical(problem, lap) -> dict[str, float]:
    """Laplace sd of each parameter in physical units (delta method through the box transform)."""
    import jax
    import jax.numpy as jnp

    pa = problem.prior
    jac = np.asarray(jax.jacfwd(pa.to_constrained)(jnp.asarray(lap.mean_z))).diagonal()
    sd = np.abs(jac) * np.sqrt(np.diag(lap.cov_z))
    return {name: float(s) for name, s in zip(problem.names, sd)}


def joint_inference_data(post, problem, ids: Sequence[str], settings: Mapping):
    """ArviZ InferenceData of a joint posterior: per-star sites with a ``star`` dim, shared ones ``<name>_group``."""
    import arviz as az

    from .inference.results import unit_for

    dims = {name: ["star"] for name in problem.star_names}
    coords = {"star": list(ids)}
    for name, keys in zip(problem.shared_names, problem.group_keys):
        dims[name] = [f"{name}_group"]
        coords[f"{name}_group"] = list(keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        idata = az.from_dict(
            posterior={name: post.samples[name] for name in problem.site_names},
            sample_stats=dict(post.stats) or None,
            coords=coords,
            dims=dims,
        )
    idata.posterior.attrs.update(
        {
            "method": post.method,
            "kind": "joint",
            "run_id": settings["run_id"],
            "settings": json.dumps(settings, default=_json_default, sort_keys=True),
            "parameters": json.dumps(list(problem.star_names)),
            "shared": json.dumps(list(problem.shared_names)),
            "units": json.dumps({name: unit_for(name) for name in problem.site_names}),
            "n_divergent": post.n_divergent,
            "n_gradient_evals": post.n_gradient_evals,
            "timings": json.dumps(post.timings),
        }
    )
    return idata


def _rhat_ess(da, n_chains):
    import arviz as az

    ds = da.to_dataset(name="x")
    r = np.asarray(az.rhat(ds)["x"]) if n_chains > 1 else np.full(da.shape[2:], math.nan)
    eb = np.asarray(az.ess(ds, method="bulk")["x"])
    et = np.asarray(az.ess(ds, method="tail")["x"])
    return r, eb, et


def joint_summaries(idata, problem, ids, inputs, alone):
    """``(stars, shared)`` tables of :class:`JointFitResult`."""
    import jax.numpy as jnp
    from astropy.table import Table

    post = idata.posterior
    n_chains = post.sizes["chain"]
    rows = [{"star": sid, **inp} for sid, inp in zip(ids, inputs)]
    med = {}
    for name in problem.star_names:
        x = np.asarray(post[name])  # chain, draw, star
        flat = x.reshape(-1, x.shape[-1])
        r, eb, _ = _rhat_ess(post[name], n_chains)
        p16, p50, p84 = np.percentile(flat, [15.865, 50, 84.135], axis=0)
        sd = flat.std(axis=0, ddof=1)
        med[name] = p50
        for i, row in enumerate(rows):
            row[name] = float(p50[i])
            row[f"{name}_err"] = float(sd[i])
            row[f"{name}_p16"] = float(p16[i])
            row[f"{name}_p84"] = float(p84[i])
            row[f"{name}_r_hat"] = float(r[i])
            row[f"{name}_ess"] = float(eb[i])
    if {"vsini", "vmacro"} <= set(problem.star_names):
        # the combined broadening √(v sin i² + v macro²), each star's: what its spectrum measures where it cannot split
        # the two (the single-star summary's VBROAD; its draws follow the ring: inference.ring)
        v = np.hypot(np.asarray(post["vsini"]), np.asarray(post["vmacro"])).reshape(-1, len(rows))
        for i, row in enumerate(rows):
            row["vbroad"] = float(np.median(v[:, i]))
            row["vbroad_err"] = float(v[:, i].std(ddof=1))
    shared_rows, shared_med = [], {}
    for j, name in enumerate(problem.shared_names):
        x = np.asarray(post[name])
        flat = x.reshape(-1, x.shape[-1])
        r, eb, et = _rhat_ess(post[name], n_chains)
        p16, p50, p84 = np.percentile(flat, [15.865, 50, 84.135], axis=0)
        shared_med[name] = p50
        gi = np.asarray(problem.group_index[j])
        prior = problem.shared_priors[j]
        for g, key in enumerate(problem.group_keys[j]):
            members = np.flatnonzero(gi == g)
            alone_vals = [alone[i][name] for i in members]
            shared_rows.append(
                {
                    "name": name,
                    "group": key,
                    "n_stars": int(len(members)),
                    "mean": float(flat[:, g].mean()),
                    "sd": float(flat[:, g].std(ddof=1)),
                    "p16": float(p16[g]),
                    "p50": float(p50[g]),
                    "p84": float(p84[g]),
                    "r_hat": float(r[g]),
                    "ess_bulk": float(eb[g]),
                    "ess_tail": float(et[g]),
                    "lower": float(prior.lower),
                    "upper": float(prior.upper),
                    "alone_p50": float(np.median([v for v, _ in alone_vals])),
                    "alone_sd_min": float(min(s for _, s in alone_vals)),
                }
            )
    # χ² at the posterior medians, per star (data σ and the model errors the likelihood uses)
    from .inference.results import observed_arrays, total_sigma

    params = problem.star_params(
        {k: jnp.asarray(v) for k, v in med.items()}, {k: jnp.asarray(v) for k, v in shared_med.items()}
    )
    for i, om in enumerate(problem.models):
        p = {k: v[i] for k, v in params.items()}
        obs = observed_arrays(om)
        model = np.asarray(om.predict(p))
        sig = total_sigma(om, p)
        m = obs["mask"]
        chi2 = float(np.sum(((obs["flux"][m] - model[m]) / sig[m]) ** 2))
        rows[i]["chi2_reduced"] = chi2 / max(int(m.sum()) - problem.n_star_params, 1)
    for row in rows:
        rh = [row[f"{name}_r_hat"] for name in problem.star_names]
        row["r_hat_max"] = float(np.nanmax(rh)) if np.any(np.isfinite(rh)) else math.nan
        row["ess_bulk_min"] = float(min(row[f"{name}_ess"] for name in problem.star_names))
    stars = Table(rows=rows, names=list(rows[0].keys()))
    shared = Table(rows=shared_rows, names=list(shared_rows[0].keys()))
    return stars, shared


def joint_diagnostics(stars, shared, post) -> dict:
    """R-hat, ESS and divergences over every parameter; ``unreliable`` (reasons) and ``advice``."""
    rh = np.concatenate([np.asarray(stars["r_hat_max"], float), np.asarray(shared["r_hat"], float)])
    ess = np.concatenate([np.asarray(stars["ess_bulk_min"], float), np.asarray(shared["ess_bulk"], float)])
    d = {
        "r_hat_max": float(np.nanmax(rh)) if np.any(np.isfinite(rh)) else math.nan,
        "ess_bulk_min": float(np.min(ess)),
        "n_divergent": post.n_divergent,
        "method": post.method,
    }
    reasons, advice = [], []
    if post.method != "laplace":
        if d["n_divergent"]:
            reasons.append(f"divergences: {d['n_divergent']} divergent transitions")
            advice.append("add priors on poorly constrained labels, hold a degenerate nuisance fixed (vmacro=0)")
        if np.isfinite(d["r_hat_max"]) and d["r_hat_max"] > RHAT_MAX:
            reasons.append(f"rhat: chains disagree (max R-hat {d['r_hat_max']:.3f} > {RHAT_MAX})")
            advice.append("run more warm-up and draws (warmup=600, draws=1000)")
        if d["ess_bulk_min"] < ESS_MIN:
            reasons.append(f"ess: the smallest bulk ESS is {d['ess_bulk_min']:.0f} (< {ESS_MIN})")
            advice.append("run more draws")
    d["unreliable"] = reasons
    d["advice"] = advice
    return d
