"""The fit pipeline: one spectrum (or many) in, a posterior out. ``stellarinf fit``, ``stellarinf demo`` and
batch fitting all call this module; it is also the Python entry point (``stellarinf.fit_spectrum``).

Stages (each timed, optionally logged): **read** the spectrum (a path or a :class:`~stellarinf.io.spectrum.Spectrum`)
and validate it; **load** the emulator (a name, a path or a model object), crop the spectrum to the model's range
and build the :class:`~stellarinf.observe.model.ObservationModel` and the posterior
:class:`~stellarinf.inference.density.Problem`; **MAP** (:func:`~stellarinf.inference.map.find_map`, data-driven
starts with screening); **Laplace** at the mode; **sampling** with a sampler of the registry
(:data:`~stellarinf.inference.samplers.SAMPLER_SPECS`); then the ArviZ ``InferenceData`` and the summary
``Table``, both carrying every setting that shaped the result, the input file's name and sha256 and a run id.

The defaults are decided here once (they used to differ between ``fit``, ``demo`` and batch fits):

- continuum: :data:`DEFAULT_CONTINUUM` = ``"marginalise"``: the Chebyshev continuum is linear in its
  coefficients, so it is integrated out exactly under a Gaussian prior (jointly with the emulator's error
  modes, one Woodbury solve). That leaves only the stellar labels and nuisances to sample (NUTS on 16
  parameters instead of 19 per segment, with no label–continuum correlations to adapt to), at the same
  marginal posterior of the labels as sampling the coefficients. ``"sample"`` (the demo's old default)
  remains available for when the coefficients themselves are wanted.
- crop margin: the spectrum is cropped by ``rv_max`` at each end (:func:`crop_margin_kms`), so the
  Doppler-shifted model never leaves the emulator's range for any RV the prior allows (beyond it the
  model would be held at its edge value).
- MAP: the same screened multi-start search on every path, :data:`DEFAULT_STARTS` starts.
- emulator: ``"auto"`` (the default) is :func:`choose_emulator`: TransformerPayne where it is fast (an
  accelerator), the Payne on a CPU, said in the log and recorded.
- sampler: :func:`choose_sampler` when none is given (NUTS where its gradients take minutes, laplace-is for
  the shipped emulators on a CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LabelError, SpectrumError, StellarinfError
from .io.validate import validate_for_fit
from .shipped_models import AUTO_MODELS, MODEL_SETS, SHIPPED_MODELS, SYNTHESIZER_MODELS, shipped_models_text

DEFAULT_EMULATOR = "auto"  # choose_emulator: TransformerPayne on an accelerator, the Payne on a CPU
DEFAULT_CONTINUUM = "marginalise"
DEFAULT_STARTS = 4
DEFAULT_SAMPLER_MINUTES = 30.0  # NUTS's wall-clock budget: past it, the fit falls back to laplace-is and says so
EXIT_UNRELIABLE = 4  # the CLI's exit code when the result is flagged unreliable (without --allow-unreliable)
NUISANCE_FIX_NAMES = ("rv", "vsini", "vmacro", "resolution")


# ------------------------------------------------------------------------------------------- stage log
HEARTBEAT_S = 5.0  # a stage without progress of its own says it is still working this often (issue 23: no silence)


class StageLog:
    """Prints ``[i/n] what …`` when a stage starts and ``      detail  [t s]`` when it ends; keeps the times.
    Within a stage that shows no progress of its own (a compiled program: XLA compiles for tens of seconds on a
    CPU, then runs), :meth:`heartbeat` prints ``      … what, N s`` every ``heartbeat_s`` seconds.

    ``echo`` is any callable taking a line (``print``, ``click.echo``); None records times silently."""

    def __init__(self, echo: Callable[[str], Any] | None = None, total: int = 6, heartbeat_s: float = HEARTBEAT_S):
        self.echo, self.total, self.i = echo, total, 0
        self.heartbeat_s = float(heartbeat_s)
        self.timings: dict[str, float] = {}
        self._name, self._t0 = None, 0.0

    def start(self, name: str, text: str) -> None:
        self.i += 1
        self._name, self._t0 = name, time.perf_counter()
        if self.echo is not None:
            self.echo(f"[{self.i}/{self.total}] {text} …")

    def done(self, detail: str = "") -> float:
        dt = time.perf_counter() - self._t0
        self.timings[f"{self._name}_s"] = dt
        if self.echo is not None:
            self.echo(f"      {detail + '  ' if detail else ''}[{dt:.1f} s]")
        return dt

    def note(self, text: str) -> None:
        if self.echo is not None:
            self.echo(f"      {text}")

    @contextlib.contextmanager
    def heartbeat(self, what: str):
        """While the body runs, print ``      … WHAT, N s`` (N: seconds since the stage started) every
        ``heartbeat_s`` seconds, from a daemon thread (XLA releases the GIL while it compiles). Yields a
        :class:`Heartbeat` whose :meth:`Heartbeat.say` changes WHAT (e.g. a phase of the work). Silent
        without ``echo``."""
        beat = Heartbeat(what)
        if self.echo is None:
            yield beat
            return
        stop = threading.Event()

        def run():
            while not stop.wait(self.heartbeat_s):
                self.echo(f"      … {beat.what}, {time.perf_counter() - self._t0:.0f} s")

        thread = threading.Thread(target=run, name="stellarinf-heartbeat", daemon=True)
        thread.start()
        try:
            yield beat
        finally:
            stop.set()
            thread.join()


class Heartbeat:
    """What :meth:`StageLog.heartbeat` says it is doing; ``say`` is a progress callback (e.g. for
    :func:`~stellarinf.inference.map.find_map`'s ``progress``)."""

    def __init__(self, what: str):
        self.what = what

    def say(self, what: str) -> None:
        self.what = what


def _as_log(log) -> StageLog:
    if isinstance(log, StageLog):
        return log
    return StageLog(log, total=6)


# ------------------------------------------------------------------------------------------- result
@dataclasses.dataclass
class FitResult:
    """What :func:`fit_spectrum` returns.

    Attributes:
        idata: ArviZ ``InferenceData``: ``posterior`` (one variable per free parameter, physical units),
            ``sample_stats``, ``observed_data``/``constant_data`` (the pixels used), ``posterior_predictive``;
            its ``posterior.attrs`` hold the settings, run id and input checksum.
        summary: astropy ``Table``, one row per parameter (mean, sd, p16, p50, p84, r_hat, ess, box, flags);
            ``meta`` holds χ², the global flags, ``RUNID``, ``INSHA256``, ``SETTINGS`` (JSON).
        map: the MAP (:class:`~stellarinf.inference.map.MAPResult`; ``.params`` in physical units).
        laplace: the Laplace approximation (:class:`~stellarinf.inference.laplace.LaplaceResult`).
        settings: every setting that shaped the result (emulator, sampler and why, fixed values, resolution
            used, priors, continuum, seed, input file and its sha256, run id, ...).
        diagnostics: reduced χ², divergences, Pareto k, max R-hat, min ESS, flags, ``unreliable`` (reasons)
            and ``advice`` (what to do about them), ``warnings``, and ``notes`` where a fit has something to say
            that is not a fault (a star far from the Sun, whose physics error is not measured).
        timings: seconds per stage (read, load, map, laplace, sampling).
        problem: the posterior :class:`~stellarinf.inference.density.Problem` (``problem.obs_model`` is the
            observation model), e.g. for Cramér–Rao bounds at the same likelihood.
        posterior: the sampler's raw :class:`~stellarinf.inference.samplers.Posterior`.
    """

    idata: Any
    summary: Any
    map: Any
    laplace: Any
    settings: dict
    diagnostics: dict
    timings: dict
    problem: Any = None
    posterior: Any = None

    @property
    def run_id(self) -> str:
        return self.settings["run_id"]

    @property
    def unreliable(self) -> list[str]:
        """Why the result should not be used as it is (empty when nothing is flagged)."""
        return list(self.diagnostics.get("unreliable", []))

    def params(self) -> dict[str, float]:
        """Posterior medians of the free parameters (physical units), continuum coefficients included."""
        return (
            {n: float(np.median(np.asarray(self.idata.posterior[n]))) for n in self.problem.names}
            if self.problem is not None
            else {}
        )

    def write(self, prefix, *, log: StageLog | Callable | None = None) -> list[Path]:
        """Write ``PREFIX.nc``, ``PREFIX_summary.fits`` and ``PREFIX_summary.csv`` as one set.

        Each file carries the run id and the input's sha256 (netCDF attributes, FITS header ``RUNID`` /
        ``INSHA256``, CSV columns ``run_id``/``input_sha256``) and the settings (the netCDF and FITS in full,
        ``SETTINGS`` JSON; the CSV, which keeps no metadata, as columns: :func:`csv_settings_columns`). The set
        is written by :func:`stellarinf.io.atomic.atomic_file_set`: all to temporaries first, then the older set
        (and its plots, which describe the old run) is removed and the new files renamed into place, so a kill
        never leaves a new ``.nc`` beside an older run's summaries. Returns the paths written."""
        prefix = output_prefix(prefix)
        paths = set_paths(prefix)
        return write_result_set(self.idata, self.summary, paths, self.settings, log=log)


def output_prefix(prefix) -> Path:
    """``OUT`` from ``OUT``, ``OUT.nc``, ``OUT.fits`` or ``OUT.csv``."""
    out = Path(prefix)
    return out.with_suffix("") if out.suffix in (".nc", ".fits", ".csv") else out


def set_paths(prefix: Path) -> dict[str, Path]:
    return {
        "nc": prefix.with_name(prefix.name + ".nc"),
        "fits": prefix.with_name(prefix.name + "_summary.fits"),
        "csv": prefix.with_name(prefix.name + "_summary.csv"),
    }


def stale_members(prefix: Path) -> list[Path]:
    """Files of an older run under ``prefix`` that a new set does not rewrite (its plots)."""
    return [prefix.with_name(prefix.name + s) for s in ("_corner.png", "_fit.png")]


def write_result_set(idata, summary, paths: Mapping[str, Path], settings: Mapping, *, log=None) -> list[Path]:
    from .inference.results import write_inference_data_to, write_table_to
    from .io.atomic import atomic_file_set, remove_stale_temporaries

    stages = _as_log(log) if log is not None else StageLog(None)
    stages.start("write", f"writing {', '.join(str(p) for p in paths.values())}")
    nc, fits_path, csv_path = paths["nc"], paths["fits"], paths["csv"]
    for p in paths.values():
        remove_stale_temporaries(p)  # left by a killed earlier run
    prefix = Path(str(nc)[: -len(".nc")])
    table = stamp_table(summary, settings)
    csv_table = table.copy()
    for name, value in csv_settings_columns(settings).items():
        csv_table[name] = value
    with atomic_file_set([nc, fits_path, csv_path], stale=stale_members(prefix)) as tmp:
        write_inference_data_to(idata, tmp[nc])
        write_table_to(table, tmp[fits_path], "fits")
        write_table_to(csv_table, tmp[csv_path], "ascii.csv")
    stages.done()
    return [nc, fits_path, csv_path]


def stamp_table(summary, settings: Mapping):
    """A copy of the summary with the run id, input checksum and settings in ``meta``."""
    table = summary.copy(copy_data=False)
    table.meta.update(
        {
            "RUNID": settings["run_id"],
            "INSHA256": settings["input_sha256"],
            "INFILE": str(settings.get("input_file", "")),
            "EMULATOR": str(settings.get("emulator", "")),
            "SAMPLER": str(settings.get("sampler", "")),
            "SETTINGS": json.dumps(settings, default=_json_default, sort_keys=True),
        }
    )
    return table


def csv_settings_columns(settings: Mapping) -> dict[str, str]:
    """The columns that make a summary CSV stand on its own (CSV keeps no table ``meta``, and ``#`` lines would
    break ordinary CSV readers): the run id, the input file and its sha256, and the settings that shaped the result
    (emulator, sampler, the medium and wavelength unit the spectrum was read in and who said so, the resolving power
    used and where it came from, whether it was fitted, the ``--fix`` values, the priors asked for), each the same
    on every row; dicts and lists as JSON text."""
    prov = settings.get("spectrum_provenance") or {}
    values = {
        "run_id": settings["run_id"],
        "input_file": settings.get("input_file", ""),
        "input_sha256": settings["input_sha256"],
        "emulator": settings.get("emulator", ""),
        "sampler": settings.get("sampler", ""),
        "medium": prov.get("input_medium"),
        "medium_source": prov.get("medium_source"),
        "wavelength_unit": prov.get("input_wavelength_unit"),
        "wavelength_unit_source": prov.get("wavelength_unit_source"),
        "resolution": settings.get("resolution"),
        "resolution_source": settings.get("resolution_source"),
        "fit_resolution": bool(settings.get("fit_resolution", False)),
        "fixed": settings.get("fixed") or {},
        "priors": settings.get("prior_requests") or [],
    }
    return {k: _csv_text(v) for k, v in values.items()}


def _csv_text(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=_json_default, sort_keys=True)
    return str(v)


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


# ------------------------------------------------------------------------------------------- inputs
def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_of_spectrum(spec) -> str:
    h = hashlib.sha256()
    for a in (spec.wavelength, spec.flux, spec.sigma, spec.mask):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def read_input(spectrum, *, resolution: float | None = None, read_options: Mapping | None = None):
    """``(Spectrum, input name, sha256)`` of a path or a Spectrum. Reading options (medium, wavelength unit,
    column names, ...) pass through to :func:`stellarinf.io.spectrum.read_spectrum`."""
    from .io.spectrum import Spectrum, read_spectrum

    if isinstance(spectrum, Spectrum):
        if resolution is not None:
            spectrum = dataclasses.replace(spectrum, resolution=arm_resolution_request(spectrum, resolution))
        return spectrum, str(spectrum.meta.get("source", "<Spectrum in memory>")), _sha256_of_spectrum(spectrum)
    kw = dict(read_options or {})
    if resolution is not None:
        kw["resolution"] = resolution
    if not isinstance(spectrum, (str, os.PathLike)):  # another in-memory spectrum: the reader decides (e.g. specutils)
        try:
            spec = read_spectrum(spectrum, **kw)
        except (TypeError, AttributeError):
            raise SpectrumError(
                f"cannot read a spectrum from a {type(spectrum).__name__}; pass a file path or a stellarinf "
                "Spectrum(wavelength, flux, sigma)"
            ) from None
        return spec, str(spec.meta.get("source", f"<{type(spectrum).__name__} in memory>")), _sha256_of_spectrum(spec)
    path = Path(spectrum)
    if not path.is_file():
        raise SpectrumError(f"spectrum file {str(path)!r} does not exist; check the path")
    spec = read_spectrum(path, **kw)
    return spec, str(path), sha256_of(path)


def read_arms(paths: Sequence, *, resolution=None, read_options: Mapping | None = None):
    """One multi-arm :class:`~stellarinf.io.spectrum.Spectrum` from several files of one star, each an arm
    (``Spectrum.from_arms``: arms must not overlap and must share a flux unit). GALAH per-CCD files keep their CCD
    number as the arm id; others are numbered in the order given. ``resolution``: one R for every arm or
    {arm: R} (default: each file's)."""
    from .io.readers.galah import galah_arm_set
    from .io.spectrum import Spectrum, read_spectrum

    paths = list(paths)
    if len(paths) < 2:
        raise SpectrumError(f"arms of one star need two or more files, got {len(paths)}")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise SpectrumError(f"spectrum file(s) not found: {', '.join(missing)}; check the path(s)")
    galah = galah_arm_set(paths)
    ids = list(galah) if galah is not None else list(range(len(paths)))
    if galah is not None:
        paths = list(galah.values())
    arms = [read_spectrum(p, **dict(read_options or {})) for p in paths]
    spec = Spectrum.from_arms(arms, ids=ids) if all(len(a.segment_ids) == 1 for a in arms) else Spectrum.from_arms(arms)
    if resolution is not None:
        spec = dataclasses.replace(spec, resolution=arm_resolution_request(spec, resolution))
    return spec


def arm_resolution_request(spec, resolution):
    """``resolution=`` applied to ``spec``: one R for a single-arm spectrum; for a multi-arm one, one R for every
    arm or a mapping {arm: R} that overrides the arms it names. A per-pixel R(λ) belongs on the Spectrum."""
    values = resolution.values() if isinstance(resolution, Mapping) else [resolution]
    if any(np.ndim(v) != 0 for v in values):
        raise SpectrumError(
            "resolution= takes one R (or {arm: R}); give a per-pixel R(λ) as the spectrum's own resolution "
            "(Spectrum(..., resolution=R_per_pixel)) so that it stays aligned with the pixels when they are cropped"
        )
    if isinstance(resolution, Mapping):
        if not spec.is_multi_arm:
            raise SpectrumError(
                "resolution={arm: R} needs a spectrum with several arms (Spectrum.from_arms); give one R here"
            )
        return {**spec.resolution, **{int(k): float(v) for k, v in resolution.items()}}
    if spec.is_multi_arm:
        return {seg: float(resolution) for seg in spec.resolution}
    return float(resolution)


def load_models(emulator) -> list:
    """:func:`load_model` of one emulator or of each of a list (a multi-arm spectrum's arms may need several)."""
    if isinstance(emulator, (list, tuple)):
        if not emulator:
            raise StellarinfError("emulator=[] names no model; give one model or a list of models")
        return [load_model(e) for e in emulator]
    return [load_model(emulator)]


def prior_requests(priors):
    """Priors as :func:`~stellarinf.inference.priors.resolve_priors` takes them: a mapping passes through; a text
    (``"logg=4.4+-0.1"``) or a sequence of texts/requests becomes a list with every text parsed, so a typo is
    reported before anything is loaded."""
    from .inference.priors import parse_prior

    if isinstance(priors, Mapping):
        return priors
    items = [priors] if isinstance(priors, str) else list(priors or [])
    return [parse_prior(p) if isinstance(p, str) else p for p in items]


def _prior_texts(priors) -> list[str] | dict:
    if isinstance(priors, Mapping):
        return {str(k): str(v) for k, v in priors.items()}
    return [str(p) for p in ([priors] if isinstance(priors, str) else list(priors or []))]


def choose_emulator(backend: str | None = None, spectrum=None) -> tuple[str | list[str], str]:
    """``(name, why)`` for ``emulator="auto"``: the shipped model whose posterior can be trusted within minutes here.

    On an accelerator TransformerPayne (``"default"``: any wavelength, NUTS affordable). On a CPU the Payne
    (``"default-payne-abo"``, the red arm's Payne on ABO physics): TransformerPayne's log density costs ~40 ms a value and ~0.16 s a gradient there, and on
    the demo star (S/N 80) its importance-sampled posterior was still unreliable after 8,000 proposals (Pareto k
    0.85; [Li/Fe] two-moded across its box, v sin i and v macro a ridge: more draws than minutes allow), while the
    Payne's costs 0.5–4 ms a value (idle to loaded machine): laplace-is spends up to 20,000 proposals on it in the
    same time (demo star: Pareto k 0.64 with the tenth session's Payne; 0.87, flagged, with the nineteenth's).

    With ``spectrum``, each of its arms gets the first model of :data:`~stellarinf.shipped_models.AUTO_MODELS` that
    covers it (GALAH blue, green and IR, Gaia RVS: a Payne each); a list when its arms need several."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    family = AUTO_MODELS["cpu" if backend == "cpu" else "accelerator"]
    if backend == "cpu":
        name, why = (
            family[0],
            (
                "the Payne on a CPU: TransformerPayne's posterior takes more log-density values than minutes allow here "
                "(~0.16 s a gradient, ~40 ms a value); pass --emulator default for TransformerPayne (on a CPU its "
                "laplace-is result may be flagged unreliable)"
            ),
        )
    else:
        name, why = family[0], f"TransformerPayne on {backend}: fast enough there"
    if spectrum is None:
        return name, why
    picked = _models_for_arms(spectrum, family)
    if not picked or picked == [name]:
        return name, why  # (an arm nothing covers: the fit names it with every model's range)
    if len(picked) == 1:
        return picked[0], f"{picked[0]}: the shipped model that covers this spectrum"
    return picked, f"{', '.join(picked)}: each arm served by the shipped model that covers it"


def _arm_ranges(spectrum) -> list[tuple[float, float]]:
    """(lowest, highest) vacuum Å of each arm of ``spectrum`` (one for a single-arm spectrum)."""
    arms = spectrum.arms() if getattr(spectrum, "is_multi_arm", False) else [spectrum]
    return [(float(np.min(a.wavelength)), float(np.max(a.wavelength))) for a in arms]


def _covers(wrange, lo: float, hi: float) -> bool:
    """Whether the range ``wrange`` (None: nothing) covers more than half of the arm ``lo``–``hi``: the one rule by
    which a model or window serves an arm."""
    return wrange is not None and min(hi, wrange[1]) - max(lo, wrange[0]) > 0.5 * (hi - lo)


def _models_for_arms(spectrum, family) -> list[str]:
    """The models of ``family`` that serve ``spectrum``: per arm the first whose range overlaps it (in order)."""
    from .emulators.registry import model_wavelength_range

    ranges = {n: model_wavelength_range(n) for n in family}
    picked = []
    for lo, hi in _arm_ranges(spectrum):
        for n in family:
            if _covers(ranges[n], lo, hi):
                if n not in picked:
                    picked.append(n)
                break
    return picked


def resolve_emulator(emulator, spectrum=None):
    """``(emulator, why)``: ``"auto"`` becomes :func:`choose_emulator`'s choice (for ``spectrum``'s arms where
    given); a set's name (:data:`~stellarinf.shipped_models.MODEL_SETS`, e.g. ``"broad"``) the set's model for each
    arm of ``spectrum``; anything else passes (why None)."""
    if isinstance(emulator, str) and emulator == "auto":
        return choose_emulator(spectrum=spectrum)
    if isinstance(emulator, str) and emulator in MODEL_SETS:
        return _set_models(emulator, spectrum)
    if isinstance(emulator, str) and emulator in SYNTHESIZER_MODELS:
        return _synthesizer_models(emulator, spectrum)
    return emulator, None


def _synthesizer_models(name: str, spectrum) -> tuple:
    """The synthesizer itself (:data:`~stellarinf.shipped_models.SYNTHESIZER_MODELS`) for each arm of ``spectrum``:
    realistic fidelity on the model window that covers the arm, with the physics that window's shipped Payne learned
    (molecules on in the blue arm) and the name's damping."""
    from .emulators.registry import model_training_physics
    from .synth import SynthesizerModel
    from .wavelength import WINDOWS

    if spectrum is None:
        raise StellarinfError(
            f"{name!r} fits with the synthesizer on the window of each arm of the spectrum: it needs the spectrum "
            "(stellarinf.fit_spectrum / stellarinf fit), and a catalogue of many stars wants an emulator"
        )
    models = []
    for lo, hi in _arm_ranges(spectrum):
        window = next((w for w in WINDOWS.values() if _covers((w.wmin, w.wmax), lo, hi)), None)
        if window is None:
            raise StellarinfError(
                f"{name!r}: no model window covers the arm at {lo:.1f}–{hi:.1f} Å; the synthesizer's windows are "
                + ", ".join(f"{w.name} {w.wmin:.0f}–{w.wmax:.0f} Å" for w in WINDOWS.values())
            )
        served = next((m for m in AUTO_MODELS["cpu"] if SHIPPED_MODELS[m].window == window.name), None)
        molecules = model_training_physics(served)["molecules"] if served else "off"
        models.append(SynthesizerModel(window=window.name, damping=SYNTHESIZER_MODELS[name], molecules=molecules))
    why = (
        f"the 1D LTE synthesizer itself on {', '.join(m.window.name for m in models)} "
        f"({SYNTHESIZER_MODELS[name]} damping): no emulator error; every gradient is a synthesis (minutes per arm)"
    )
    return (models[0], why) if len(models) == 1 else (models, why)


def _set_models(name: str, spectrum) -> tuple[str | list[str], str]:
    """The models of set ``name`` that serve ``spectrum``'s arms (one name, or a list when its arms need several)."""
    members = MODEL_SETS[name]
    if spectrum is None:
        raise StellarinfError(
            f"{name!r} is a set of models, one per arm ({', '.join(members)}): it needs the spectrum to choose "
            "from; name the arm's model instead"
        )
    picked = _models_for_arms(spectrum, members)
    if not picked:
        raise StellarinfError(
            f"no model of the {name!r} set covers this spectrum ({float(np.min(spectrum.wavelength)):.1f}–"
            f"{float(np.max(spectrum.wavelength)):.1f} Å); the set covers the windows of {', '.join(members)}"
        )
    why = f"the {name!r} set's model for each arm"
    return (picked[0], why) if len(picked) == 1 else (picked, why)


def load_model(emulator):
    """The forward model: a name (``"auto"``: :func:`choose_emulator`; ``"default"``, ``"default-payne"``), a model
    directory, or a model object (anything with ``label_space``, ``wavelength_range`` and ``flux``: an emulator, the
    synthesizer, a test model)."""
    emulator, _ = resolve_emulator(emulator)
    if isinstance(emulator, (str, os.PathLike)):
        from .emulators.registry import load_emulator

        return load_emulator(emulator)
    if all(hasattr(emulator, a) for a in ("label_space", "wavelength_range", "flux")):
        return emulator
    raise StellarinfError(
        f"emulator must be a shipped model's name ({shipped_models_text()}), 'auto', a model directory or a model "
        f"object, got {type(emulator).__name__}"
    )


def emulator_kind(model) -> str:
    return str(getattr(model, "kind", type(model).__name__))


# a default fit's sampling stage should take minutes (issue 23: a default fit under 5 minutes): NUTS is chosen only
# where its ~60,000 gradients (4 chains × 1,500 iterations × ~10) take less than this
NUTS_DEFAULT_SECONDS = 180.0


# Importance sampling from the Laplace approximation degenerates as the free parameters grow: on the observed Sun's
# four GALAH arms through the broad set (38 free parameters) laplace-is's Pareto k was 0.92-1.27 with an importance
# ESS of 9-49 from 20,000 proposals (benchmarks/results/four_arm_fit_laplace_is.json), while on one arm's 13 it is
# below 0.7 for most stars (the 2,000-star catalogue: 5.5 % flagged at 4 x 1,000). Past this many the CPU default is
# the Laplace approximation itself, which broad-set catalogues show calibrated (95.6 % of pulls within 2 total sd).
LAPLACE_IS_MAX_FREE = 24


def choose_sampler(model, backend: str | None = None, n_free: int | None = None) -> tuple[str, str]:
    """``(sampler, why)`` for a fit where none was asked for: one that finishes on the machine at hand.

    NUTS costs ~60,000 gradients (4 chains × 1,500 iterations × ~10); it is the choice only where they take less
    than :data:`NUTS_DEFAULT_SECONDS` (any model on an accelerator). On a 2-core CPU TransformerPayne's gradient is
    about 0.16 s (hours) and the Payne's 5.6 ms (~6 minutes, MAP not included), so there the choice is laplace-is
    (log-density values only; more proposals while its importance ESS is low, within minutes; its Pareto k says
    when it cannot be trusted) for up to :data:`LAPLACE_IS_MAX_FREE` free parameters (``n_free``: the fit's; default
    the model's labels + rv, v sin i, v macro), and beyond it ``laplace``, where importance sampling degenerates."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    from .emulators.kinds import NETWORK_KINDS

    kind = emulator_kind(model)
    if kind == "synthesizer":
        return "laplace", (
            "the synthesizer itself: each gradient is a synthesis (seconds), so the MAP and its Laplace approximation "
            "already take minutes per arm; NUTS's ~60,000 gradients would take days (pass --sampler to override)"
        )
    spec = NETWORK_KINDS.get(kind)
    if spec is not None and backend == "cpu" and spec.cpu_gradient_s * 60_000 > NUTS_DEFAULT_SECONDS:
        minutes = spec.cpu_gradient_s * 60_000 / 60
        span = f"{minutes / 60:.0f} hours" if minutes > 90 else f"~{minutes:.0f} minutes"
        if n_free is None and getattr(model, "label_space", None) is not None:
            n_free = len(model.label_space) + 3
        if n_free is not None and n_free > LAPLACE_IS_MAX_FREE:
            return "laplace", (
                f"{kind} on a CPU: at {spec.cpu_gradient_s:g} s per gradient NUTS takes {span} even before {n_free} "
                f"free parameters lengthen it, and importance sampling from the Laplace approximation degenerates "
                f"beyond {LAPLACE_IS_MAX_FREE} (Pareto k 0.9-1.3 on a four-arm fit of 38); the Laplace approximation "
                "is calibrated there on synthesizer stars (pass --sampler nuts for the full posterior, e.g. on a GPU)"
            )
        return "laplace-is", (
            f"{kind} on a CPU: at {spec.cpu_gradient_s:g} s per gradient NUTS takes {span}; laplace-is needs values "
            "only (pass --sampler nuts for NUTS, e.g. on a GPU"
            + ("" if kind == "payne" else "; --emulator default-payne for a faster model")
            + ")"
        )
    return "nuts", f"{kind} on {backend}: gradients are cheap enough for NUTS"


def crop_margin_kms(rv_max: float) -> float:
    """The one crop margin: ``rv_max`` (see the module docstring)."""
    return float(rv_max)


def validate_fixed(
    fixed: Mapping[str, float], model, *, rv_max: float, vsini_max: float, vmacro_max: float
) -> dict[str, float]:
    """Fixed values as floats, each inside its box: labels inside the model's training box
    (:func:`~stellarinf.io.validate.validate_fixed_labels`), |rv| ≤ rv_max, 0 ≤ vsini ≤ vsini_max,
    0 ≤ vmacro ≤ vmacro_max, resolution > 0. Outside it the model extrapolates to garbage (``--fix teff=50000``)."""
    from .io.validate import validate_fixed_labels

    values = {}
    for name, value in fixed.items():
        name = str(name).strip().lower()
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            raise LabelError(f"fixed {name}={value!r} is not a number") from None
    out = validate_fixed_labels(values, model.label_space)  # finite; labels inside the training box
    boxes = {"rv": (-rv_max, rv_max), "vsini": (0.0, vsini_max), "vmacro": (0.0, vmacro_max)}
    for name, v in out.items():
        if name in boxes and not boxes[name][0] <= v <= boxes[name][1]:
            lo, hi = boxes[name]
            raise LabelError(
                f"fixed {name}={v:g} lies outside the box {lo:g}–{hi:g} km/s (the fit's range for {name}); "
                f"choose a value inside it, or widen the box (--{name}-max)"
            )
        if name == "resolution" and not v > 0:
            raise LabelError(f"fixed resolution={v:g}: the resolving power must be > 0")
    return out


def unknown_resolution_message(model) -> str:
    """Why a fit without a known resolving power may be wrong, and the way forward."""
    r = getattr(model, "resolution", None)
    at = f"at the model's own R = {float(r):,.0f}" if r else "unbroadened"
    return (
        f"the spectrum's resolving power is unknown (no RESOLUTN/SPEC_RES/R header card, none given): the model is "
        f"compared {at}, with no instrument broadening; if the instrument's R is lower (e.g. 5,000), the labels are "
        "biased: pass resolution=R (CLI: --resolution R) or fit it (--fit-resolution)"
    )


CONTINUUM_ANGSTROM_PER_DEGREE = 40.0


def auto_continuum_degree(spec) -> int:
    """One Chebyshev degree per 40 Å of the longest segment, between 2 and 8.

    Why: spectra arrive normalised by someone else's procedure (an upper-envelope polynomial, a spline), whose
    errors wiggle on ~50–100 Å scales; a quadratic over a 260 Å window cannot follow them, and the fit then
    buys them down with Teff and log g (the observed Sun: Teff −165 K, log g −0.28 with degree 2; −65 K, −0.16
    with degree 6; benchmarks/README.md section 6).
    """
    spans = [float(np.ptp(spec.wavelength[spec.segments == s])) for s in np.unique(spec.segments)]
    return int(np.clip(round(max(spans) / CONTINUUM_ANGSTROM_PER_DEGREE), 2, 8))


def build_problem(
    model,
    spec,
    *,
    resolution=None,
    fit_resolution=False,
    continuum=DEFAULT_CONTINUUM,
    continuum_degree="auto",
    rv_max=300.0,
    vsini_max=60.0,
    vmacro_max=15.0,
    jitter=False,
    fixed=None,
    priors=None,
    error_modes=True,
    physics_error=None,
    rv_offsets=False,
):
    """Crop ``spec`` to the model (margin :func:`crop_margin_kms`), build the observation model and the Problem.
    Fixed nuisances and labels go to the observation model, anything else (e.g. ``ln_jitter``) to the Problem.
    ``physics_error``: ``(floor, depth_fraction)`` or None (see :func:`resolve_physics_error`).

    A multi-arm spectrum (``spec.is_multi_arm``; ``model`` one model or a list) gets a
    :class:`~stellarinf.observe.multi_arm.MultiArmObservationModel`: each arm cropped to the model that covers it
    and observed at its own R; ``rv_offsets`` adds an RV zero point per arm but the first."""
    from .inference.density import Problem
    from .io.spectrum import crop_to_model
    from .observe.model import ObservationModel

    fixed = dict(fixed or {})
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    if spec.is_multi_arm or len(models) > 1:
        return _build_multi_arm_problem(
            models,
            spec,
            resolution=resolution,
            fit_resolution=fit_resolution,
            continuum=continuum,
            continuum_degree=continuum_degree,
            rv_max=rv_max,
            vsini_max=vsini_max,
            vmacro_max=vmacro_max,
            jitter=jitter,
            fixed=fixed,
            priors=priors,
            error_modes=error_modes,
            physics_error=physics_error,
            rv_offsets=rv_offsets,
        )
    if rv_offsets:
        raise StellarinfError(
            "rv_offsets needs a spectrum with several arms (Spectrum.from_arms / stellarinf fit --arms)"
        )
    spec = crop_to_model(spec, model, margin_kms=crop_margin_kms(rv_max))
    if continuum_degree == "auto":
        continuum_degree = auto_continuum_degree(spec)
    if resolution is None and spec.resolution is None and not fit_resolution and "resolution" not in fixed:
        warnings.warn(unknown_resolution_message(model), UserWarning, stacklevel=2)
    obs_fixed = {k: v for k, v in fixed.items() if k in NUISANCE_FIX_NAMES or k in model.label_space.names}
    obs = ObservationModel(
        model,
        spec,
        resolution=resolution,
        fit_resolution=fit_resolution,
        continuum=continuum,
        continuum_degree=continuum_degree,
        fit_jitter=jitter,
        rv_max=rv_max,
        vsini_max=vsini_max,
        vmacro_max=vmacro_max,
        fixed=obs_fixed,
        error_modes=error_modes,
        physics_error=physics_error,
    )
    rest = {k: v for k, v in fixed.items() if k not in obs_fixed}
    problem = Problem.build(obs, priors, fixed=rest)
    validate_for_fit(spec, problem.n_free)  # enough usable pixels in the model's range for the free parameters
    return spec, obs, problem


def _build_multi_arm_problem(
    models, spec, *, continuum_degree, fixed, priors, jitter, error_modes, physics_error, **kw
):
    from .inference.density import Problem
    from .io.spectrum import Spectrum
    from .observe.multi_arm import build_multi_arm, crop_arms

    if not spec.is_multi_arm:  # several models, one arm each: the segments are the arms, R from the spectrum
        spec = Spectrum.from_arms(spec.arms())
    if continuum_degree == "auto":  # the single-arm rule, on the pixels each arm's model sees (cropped)
        arms = crop_arms(spec, models, margin_kms=crop_margin_kms(kw["rv_max"]))
        continuum_degree = max(auto_continuum_degree(arm) for arm, _ in arms)
    names = set().union(*(m.label_space.names for m in models)) | set(NUISANCE_FIX_NAMES)
    obs_fixed = {k: v for k, v in fixed.items() if k in names or k.startswith("rv_offset_")}
    spec, obs = build_multi_arm(
        models,
        spec,
        fixed=obs_fixed,
        continuum_degree=continuum_degree,
        fit_jitter=jitter,
        error_modes=error_modes,
        physics_error=physics_error,
        margin_kms=crop_margin_kms(kw["rv_max"]),
        **kw,
    )
    rest = {k: v for k, v in fixed.items() if k not in obs_fixed}
    problem = Problem.build(obs, priors, fixed=rest)
    validate_for_fit(spec, problem.n_free)
    return spec, obs, problem


def arm_settings(obs, models, labels) -> list[dict]:
    """Per arm of a multi-arm fit: id, wavelength range, R used, forward model, pixels used."""
    out = []
    for seg, arm in zip(obs.arm_ids, obs.arms):
        wl = np.asarray(arm.wavelength)
        k = next(i for i, m in enumerate(models) if m is arm.emulator)
        out.append(
            {
                "arm": int(seg),
                "wavelength_range": [float(wl.min()), float(wl.max())],
                "resolution": arm.resolution_record,
                "emulator": labels[k],
                "emulator_kind": emulator_kind(arm.emulator),
                "n_pixels_used": int(np.sum(np.asarray(arm.weight) > 0)),
            }
        )
    return out


# ------------------------------------------------------------------------------------------- diagnostics
def medium_warning(idata, spec) -> str | None:
    """The air/vacuum warning for a fit's posterior RV (:func:`rv_medium_message`), or None (RV held fixed)."""
    if "rv" not in idata.posterior.data_vars:
        return None
    rv = np.asarray(idata.posterior["rv"], dtype=float).ravel()
    return rv_medium_message(float(np.mean(rv)), float(np.std(rv)), spec)


def rv_medium_message(rv_kms: float, rv_sd_kms: float, spec) -> str | None:
    """:func:`stellarinf.wavelength.rv_medium_warning` for a fitted RV and the medium ``spec`` was read as, or None
    (no such shift, or wavelengths below 2000 Å, where air wavelengths are not used)."""
    from .wavelength import rv_medium_warning

    if float(np.median(spec.wavelength)) < 2000.0:
        return None
    return rv_medium_warning(
        float(rv_kms),
        spec.wavelength,
        spec.input_medium,
        medium_source=spec.medium_source,
        rv_sigma_kms=float(rv_sd_kms) if np.isfinite(rv_sd_kms) else 0.0,
    )


def tree_depth_warning(posterior, fraction: float = 0.1) -> str | None:
    """Words for a NUTS run whose trees hit their maximum depth in more than ``fraction`` of the draws (None if
    not): each such draw stopped short of a U-turn, so the chains crawl and their ESS is small."""
    cap = (getattr(posterior, "tuning", {}) or {}).get("max_tree_depth")
    depth = (getattr(posterior, "stats", {}) or {}).get("tree_depth")
    if cap is None or depth is None or not np.size(depth):
        return None
    hit = float(np.mean(np.asarray(depth) >= int(cap)))
    if hit <= fraction:
        return None
    return (
        f"tree_depth: {100 * hit:.0f} % of the NUTS draws hit the maximum tree depth ({int(cap)}, "
        f"{2 ** int(cap) - 1} gradients): the posterior is far narrower in some direction than the sampler's step "
        "(a near-degenerate or strongly curved posterior); the draws are strongly correlated. Add a prior on the "
        "labels the spectrum hardly constrains (--prior NAME=MEAN+-SD), fix a degenerate nuisance (--fix vmacro=0), "
        "or compare with --sampler laplace-is"
    )


def tio_warning(summary, models) -> str | None:
    """Words for a star fitted where TiO bands shape its spectrum (at the median labels) through a model whose
    physics has no TiO (:func:`~stellarinf.physics_options.no_tio_message`); None if not."""
    from .physics_options import no_tio_message

    rows = {str(r["name"]): float(r["p50"]) for r in summary}
    if "teff" not in rows or "logg" not in rows:
        return None
    return no_tio_message(rows["teff"], rows["logg"], models, rows)


def diagnose(summary, posterior) -> dict:
    """Reliability of a fit from its summary table and sampler output: numbers, ``unreliable`` (reasons) and
    ``advice`` (one line per reason saying what to do next)."""
    m = summary.meta
    flags = [f for f in str(m.get("FLAGS", "")).split(",") if f]
    rhat = np.asarray(summary["r_hat"], dtype=float) if len(summary) else np.array([])
    rhat_max = float(np.nanmax(rhat)) if np.any(np.isfinite(rhat)) else math.nan
    d = {
        "chi2_reduced": float(m.get("CHI2RED", math.nan)),
        "n_divergent": int(m.get("NDIVERG", 0)),
        "r_hat_max": rhat_max,
        "ess_bulk_min": float(np.min(summary["ess_bulk"])) if len(summary) else math.nan,
        "flags": ",".join(flags),
        "label_flags": {str(r["name"]): str(r["flags"]) for r in summary if r["flags"]},
    }
    tuning = getattr(posterior, "tuning", {}) or {}
    for k in ("pareto_k", "pareto_k_threshold", "importance_ess"):
        if k in tuning:
            d[k] = float(tuning[k])
    reasons, advice = [], []
    # labels the spectrum hardly constrains (posterior as wide as the box, or piled at an edge): the usual reason a
    # posterior is far from Gaussian; a prior or a fixed value on them is the most direct remedy
    weak = [
        str(r["name"]) for r in summary if {"no_information", "edge_low", "edge_high"} & set(str(r["flags"]).split(","))
    ]
    weak_hint = (
        f"; the spectrum hardly constrains {', '.join(weak)}: a prior (--prior {weak[0]}=MEAN+-SD) or a fixed value "
        f"(--fix {weak[0]}=VALUE) on {'it' if len(weak) == 1 else 'them'} makes the posterior easier"
        if weak
        else ""
    )
    is_importance = getattr(posterior, "method", "") == "laplace-is" or "pareto_k" in tuning
    if "pareto_k" in flags:
        reasons.append(
            f"pareto_k: the importance weights are unreliable (Pareto k {d.get('pareto_k', math.nan):.2f} > "
            f"{d.get('pareto_k_threshold', 0.7):.2f}): the posterior is far from its Laplace approximation"
        )
        advice.append(
            "rerun with more proposals (--draws 4000), with the Payne (--emulator default-payne: its values are 10-80x "
            "cheaper on a CPU, so laplace-is affords more of them), or with --sampler nuts (on a CPU: 10–25 min "
            "with the Payne, hours with TransformerPayne; minutes on a GPU)" + weak_hint
        )
        weak_hint = ""  # said once
    if "divergences" in flags:
        reasons.append(
            f"divergences: {d['n_divergent']} divergent transitions (the sampler could not follow the posterior)"
        )
        advice.append(
            "add a prior on poorly constrained labels (--prior NAME=MEAN+-SD), hold a degenerate nuisance fixed "
            "(--fix vmacro=0), or run a longer warm-up (--warmup 1000)"
        )
    from .inference.results import unconverged_labels

    bad_rhat = unconverged_labels({str(r["name"]): str(r["flags"]) for r in summary}, flags)
    if bad_rhat:
        r_hats = {str(r["name"]): float(r["r_hat"]) for r in summary} | {"vbroad": float(m.get("VBROADRH", math.nan))}
        worst = np.nanmax([r_hats[n] for n in bad_rhat])
        shown = ["√(v sin i² + v macro²)" if n == "vbroad" else n for n in bad_rhat]
        reasons.append(f"rhat: chains disagree (R-hat {worst:.3f} > 1.01) for {', '.join(shown)}")
        if is_importance:
            advice.append(
                f"the chains are independent importance-sampling estimates with too few effective draws each "
                f"(importance ESS {d.get('importance_ess', math.nan):.0f} over all chains): rerun with more proposals "
                "(--draws 4000) or --sampler nuts" + weak_hint
            )
        else:
            advice.append(
                "run more draws and warm-up (--draws 2000 --warmup 1000), or more MAP starts (--starts 8) in case "
                "the posterior has several modes"
            )
    d["unreliable"] = reasons
    d["advice"] = advice
    return d


# ------------------------------------------------------------------------------------------- one spectrum
def resolve_physics_error(
    physics_error, spec, models: Sequence = ()
) -> tuple[tuple[float, float] | None, dict[str, float], str | None]:
    """The synthesizer-vs-reality error term for ``spec``: ``"auto"`` → the values measured on the observed Sun
    for its wavelengths and the model of ``models`` that serves it (its physics, and its own label floor where one
    was measured through it: :func:`stellarinf.observe.physics_error.physics_error_for`, :func:`serving_model`),
    ``None``/``"off"`` → none, or an explicit ``(floor, depth_fraction[, regions])``.

    Returns ``(term, label_floor, floor_source)``: ``floor_source`` says in words where the label floor was measured
    (through the serving model itself, or through the window's model:
    :func:`stellarinf.observe.physics_error.label_floor_source`); None when no floor is given."""
    if physics_error is None or physics_error == "off":
        return None, {}, None
    if physics_error == "auto":
        from .observe.physics_error import label_floor_source, physics_error_for

        wmin, wmax = float(spec.wavelength.min()), float(spec.wavelength.max())
        model = serving_model(spec, models)
        term, floor = physics_error_for(wmin, wmax, model=model)
        return term, floor, label_floor_source(wmin, wmax, model=model)
    try:
        floor, frac, *regions = physics_error
        term = (float(floor), float(frac)) + ((tuple(tuple(r) for r in regions[0]),) if regions else ())
        if len(regions) > 1:
            raise ValueError
    except (TypeError, ValueError):
        raise StellarinfError(
            "physics_error must be 'auto', 'off' or (floor, depth_fraction[, regions]) with regions ((lo, hi) left "
            f"out, or (lo, hi, sd) kept with sd more error, ...), got {physics_error!r}"
        ) from None
    return term, {}, None


def borrowed_floor_note(floor_source) -> str | None:
    """Words for a fit whose physics label floor (``floor_source``: :func:`resolve_physics_error`'s words, or
    {arm: words}) was measured through another model than the one fitting; None when every arm's is its own."""
    from .observe.physics_error import OWN_FLOOR

    sources = floor_source.values() if isinstance(floor_source, Mapping) else [floor_source]
    borrowed = [s for s in sources if s is not None and not s.startswith(OWN_FLOOR)]
    if not borrowed:
        return None
    return (
        "label floor: the systematic floor in sd_total was not measured through the model fitting here (it has not "
        f"been fitted to the observed Sun), it is {borrowed[0].split(':')[0]}; this model's own offsets on the Sun can "
        "be several times larger (data/measure_physics_error.py --model measures them)"
    )


def serving_model(spec, models: Sequence):
    """The model of ``models`` that serves single-arm ``spec`` (:func:`stellarinf.observe.multi_arm.choose_arm_models`);
    None when no model covers it."""
    from .errors import WavelengthError
    from .observe.multi_arm import choose_arm_models

    if not models:
        return None
    try:
        return choose_arm_models(spec, models)[0]
    except WavelengthError:
        return None


def physics_ranges_left_out(phys, wavelength) -> list[str]:
    """The ``(lo, hi)`` regions of the physics-error term ``phys`` (one term, or {arm: term}) that hold pixels of
    ``wavelength``, as words ("6540–6590 Å"): the observation model leaves them out
    (:func:`stellarinf.observe.build.physics_excluded`)."""
    from .observe.build import physics_excluded

    terms = list(phys.values()) if isinstance(phys, Mapping) else [phys]
    regions = {tuple(float(v) for v in r) for t in terms if t is not None and len(t) > 2 for r in t[2]}
    hit = [r for r in sorted(regions) if physics_excluded(wavelength, (r,)).any()]
    return [f"{lo:.0f}–{hi:.0f} Å" for lo, hi in hit]


def physics_ranges_note(*left_out: list[str]) -> str | None:
    """The log line naming the ranges left out (:func:`physics_ranges_left_out` of one or more spectra, in order,
    each once), or None when none was."""
    ranges = list(dict.fromkeys(r for rs in left_out for r in rs))
    if not ranges:
        return None
    return "left out where the 1D LTE physics is wrong in shape (data/physics_error.json): " + "; ".join(ranges)


def mask_telluric_bands(spec):
    """``(spectrum, bands)``: ``spec`` with the telluric bands (observer's frame) masked, and the bands hit."""
    import dataclasses

    from .io.tellurics import telluric_mask

    keep, bands = telluric_mask(spec.wavelength)
    if not bands:
        return spec, []
    return dataclasses.replace(spec, mask=np.asarray(spec.mask, bool) & keep), bands


def outlier_pixels(obs, params, *, threshold: float = 5.0) -> np.ndarray:
    """Boolean per pixel of ``obs``: the used pixels more than ``threshold`` total σ from its model at ``params``
    (:func:`stellarinf.observe.outliers.outlier_mask`; at most 2 % of them, each grown by a pixel)."""
    from .inference.results import model_at
    from .observe.outliers import outlier_mask

    model, sigma, _ = model_at(obs, params)
    return outlier_mask(np.asarray(obs.flux), model, sigma, np.asarray(obs.weight) > 0, threshold=threshold)


def mask_outliers(spec, obs, params, *, threshold: float = 5.0):
    """``(spectrum, n)``: ``spec`` with the :func:`outlier_pixels` of ``obs`` at ``params`` masked, and their
    number."""
    import dataclasses

    bad = outlier_pixels(obs, params, threshold=threshold)
    if not bad.any():
        return spec, 0
    # obs was built on the cropped spectrum: same pixels, same order
    return dataclasses.replace(spec, mask=np.asarray(spec.mask, bool) & ~bad), int(bad.sum())


def weight_out_outliers(obs, params, *, threshold: float = 5.0):
    """``(obs, n)``: the observation model with its :func:`outlier_pixels` at ``params`` given weight 0, and their
    number. Only an array changes, so the programs compiled for ``obs`` serve the copy: a batch masks its stars'
    outliers so, where a star fitted on its own is rebuilt on its masked spectrum (:func:`mask_outliers`)."""
    import jax.numpy as jnp

    from .observe.error_scale import replaced

    bad = outlier_pixels(obs, params, threshold=threshold)
    if not bad.any():
        return obs, 0
    return replaced(obs, weight=jnp.asarray(np.where(bad, 0.0, np.asarray(obs.weight)))), int(bad.sum())


def _with_scales(obs, problem, scales):
    """(obs, problem) with each arm's emulator error × its scale (:func:`observe.error_scale.with_error_scales`)."""
    from .observe.error_scale import with_error_scales

    obs = with_error_scales(obs, scales)
    return obs, problem.with_obs_model(obs)


def _scaled_to_star(problem, map_result):
    """The problem with its emulator error scaled at its first MAP (None where no arm's emulator measured a scale)
    and the star's ``error_scale`` column (NaN then)."""
    from .observe.error_scale import star_error_scales

    scales = star_error_scales(problem.obs_model, map_result.params)
    if all(s is None for s in scales):
        return None, {"error_scale": math.nan}
    _, scaled = _with_scales(problem.obs_model, problem, scales)
    return scaled, {"error_scale": float(next(s for s in scales if s is not None))}


def _batch_restart(scale: bool, clip: bool):
    """``fit_batch``'s rescale, what :func:`fit_spectrum` does between its MAP and its Laplace: with ``scale`` the
    emulator error scaled to the star (column ``error_scale``), then with ``clip`` its outlier pixels weighted out
    (column ``outlier_pixels_masked``); None where neither is asked."""
    if not (scale or clip):
        return None

    def restart(problem, map_result):
        new, columns = _scaled_to_star(problem, map_result) if scale else (None, {})
        if clip:
            current = new or problem
            obs, n = weight_out_outliers(current.obs_model, {**current.fixed, **map_result.params})
            columns["outlier_pixels_masked"] = n
            new = current.with_obs_model(obs) if n else new
        return new, columns

    return restart


def _scales_text(scales) -> str:
    return ", ".join("—" if s is None else f"×{s:.2f}" for s in scales)


def fit_spectrum(
    spectrum,
    *,
    emulator=DEFAULT_EMULATOR,
    sampler: str | None = None,
    priors=None,
    fixed: Mapping[str, float] | None = None,
    resolution: float | None = None,
    fit_resolution: bool = False,
    continuum: str = DEFAULT_CONTINUUM,
    continuum_degree: int | str = "auto",
    rv_max: float = 300.0,
    vsini_max: float = 60.0,
    vmacro_max: float = 15.0,
    emulator_error: str = "modes",
    error_scale: str = "star",
    jitter: bool = False,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 500,
    n_starts: int = DEFAULT_STARTS,
    seed: int = 0,
    progress: bool = False,
    max_minutes: float | None = DEFAULT_SAMPLER_MINUTES,
    log: StageLog | Callable[[str], Any] | None = None,
    read_options: Mapping | None = None,
    emulator_name: str | None = None,
    physics_error="auto",
    mask_tellurics: bool = True,
    clip_outliers: bool = True,
    degrade_to_model: bool = False,
    rv_offsets: bool = False,
    draw_log_density: bool | None = None,
) -> FitResult:
    """Fit the stellar labels of one observed spectrum; returns a :class:`FitResult`.

    Args:
        spectrum: a file path (FITS table/image, APOGEE, GALAH, CSV/text: see ``stellarinf.read_spectrum``) or a
            ``stellarinf.Spectrum``. Wavelengths in vacuum Å (converted from air/other units by the reader),
            flux normalised or not (a Chebyshev continuum per segment is fitted), per-pixel σ in flux units.
        emulator: ``"default"`` (TransformerPayne), ``"default-payne"`` (the Payne MLP), a model directory, or
            an already-loaded model object (an emulator, the synthesizer, a test model); or a list of them for a
            spectrum with several arms, each arm then evaluated by the model that covers it.
        sampler: ``"nuts"``, ``"blackjax-nuts"``, ``"mclmc"``, ``"laplace-is"``, ``"laplace"``, ``"map"``
            (``stellarinf.inference.samplers.SAMPLER_SPECS``); None: :func:`choose_sampler` picks one that
            finishes on this machine and ``settings["sampler_reason"]`` says why.
        priors: overrides of the default uniform priors over the training box, e.g. ``["logg=4.4+-0.1",
            "teff=5000:6000"]`` (Gaussian: mean+-sd; uniform: lower:upper; units as the labels: K, dex, km/s).
        fixed: parameters held fixed, e.g. ``{"vmacro": 0.0}``; each must lie inside its box.
        resolution: the instrument's resolving power R = λ/Δλ (default: from the file's header); for a spectrum
            with several arms, one R for all or ``{arm id: R}``.
        fit_resolution: fit R as a parameter (starting from ``resolution``).
        degrade_to_model: a spectrum sharper than the model (R above the model's) is smoothed and resampled to the
            model's R (:mod:`stellarinf.observe.degrade`) instead of refused.
        continuum: ``"marginalise"`` (default: integrated out), ``"sample"`` or ``"profile"``;
            ``continuum_degree``: Chebyshev degree per segment (-1: none; ``"auto"``, the default: one degree per
            40 Å, 2–8, :func:`auto_continuum_degree`).
        rv_max, vsini_max, vmacro_max: box of the RV, v sin i and v macro priors (km/s).
        emulator_error: ``"modes"`` (integrate out the emulator's correlated error modes when it has them)
            or ``"white"``; ``jitter``: fit an extra white-noise term ``ln_jitter``.
        error_scale: ``"star"`` (default): where the emulator measured how its error varies over its box
            (``stellarinf error-model``; the broad sets), its error is scaled to this star: s(θ) at the first
            MAP's labels, then held fixed while the MAP is polished again and the posterior computed
            (:mod:`stellarinf.observe.error_scale`; ``settings["error_scale"]`` has each arm's s). ``"box"``: the
            error table as measured, the held-out rms over the whole box.
        chains, draws, warmup: sampler size (per chain); ``n_starts``: MAP starting points; ``seed``.
        progress: the sampler's progress bar (NUTS); ``log``: a callable taking a line (e.g. ``print``)
            to print the stages with their times, or a :class:`StageLog`.
        max_minutes: NUTS's wall-clock budget (warm-up included; None = none): when the draws so far project past
            it, NUTS stops and the fit falls back to Laplace + importance sampling, saying so in the log, in
            ``settings["sampler_fallback"]`` and in ``diagnostics["warnings"]``.
        read_options: passed to ``read_spectrum`` (e.g. ``{"medium": "air", "wavelength_unit": "nm"}``).
        physics_error: the synthesizer-vs-reality error in the likelihood: ``"auto"`` (default; measured on the
            observed Sun, ``data/physics_error.json``, per arm; its label-space floor joins ``sd_sys``: with
            several arms, each arm's weighted by its information, ``inference.arm_combination``; its ranges where
            the 1D LTE physics is wrong in shape, the Balmer wings, the Ca II triplet cores and Paschen P14, are left out of the
            fit, ``settings["physics_ranges_left_out"]``), ``"off"`` (for spectra made by the synthesizer itself) or
            ``(floor, depth_fraction[, regions])`` (regions ``(lo, hi)`` left out or ``(lo, hi, sd)`` kept with
            ``sd`` more error).
        mask_tellurics: mask the telluric bands (O₂ A/B, strong H₂O; ``stellarinf.io.tellurics``) in the
            observer's frame; ``clip_outliers``: after the MAP, mask pixels more than 5 total σ off the model
            (cosmic rays, emission; at most 2 %) and find the MAP again. Both are recorded in ``settings``.
        rv_offsets: for a spectrum with several arms, fit an RV zero-point offset ``rv_offset_<arm>`` (km/s)
            for every arm but the first.
        draw_log_density: with ``laplace`` or ``map``, evaluate the log density at every draw (the idata's
            ``sample_stats.lp``): about half of such a fit's time with the Payne on a CPU, and nothing else needs
            it, so ``fit-catalog`` turns it off unless it keeps the draws. None (default): only where it takes at
            most ``samplers.LOG_DENSITY_BUDGET_S`` (a note says when it was left out; ``settings["draw_log_density"]``
            says whether it was computed). The other samplers always have it.

    Several arms: a ``Spectrum`` whose ``resolution`` is a mapping {arm id: R} (``Spectrum.from_arms([blue,
    red])``, CLI ``stellarinf fit --arms a.fits b.fits``) is fitted in one call: the labels, RV, v sin i and
    v macro are shared, each arm has its own continuum, R and forward model
    (:mod:`stellarinf.observe.multi_arm`); ``settings["arms"]`` records each arm's range, R and model.

    Returns:
        :class:`FitResult` with ``summary`` (astropy Table: median ``p50``, ``sd``, 16/84 % per parameter,
        diagnostics and flags), ``idata`` (ArviZ InferenceData), ``map``, ``laplace``, ``settings``,
        ``diagnostics`` (``unreliable`` lists reasons not to trust it, ``advice`` what to do) and
        ``write(prefix)`` (``PREFIX.nc``, ``PREFIX_summary.fits``, ``PREFIX_summary.csv``).

    Raises:
        StellarinfError (subclasses SpectrumError, LabelError, WavelengthError, PriorError, ModelFileError):
        bad input, with a message naming the problem and the fix. The spectrum is read and checked before the
        emulator is loaded, so a bad file is reported at once.

    Example::

        >>> import stellarinf
        >>> result = stellarinf.fit_spectrum("data/demo/demo_star.fits", emulator="default-payne", sampler="laplace")
        >>> print(result.summary["name", "p50", "sd"])
        >>> result.write("demo_fit")   # demo_fit.nc, demo_fit_summary.fits, demo_fit_summary.csv
    """
    from . import enable_float64
    from .inference import results as res
    from .inference.laplace import laplace
    from .inference.map import carried_to_convergence, find_map, refine_map
    from .inference.samplers import SamplerBudgetExceeded, sample, sampler_spec
    from .observe.degrade import match_model_resolution
    from .observe.error_scale import check_error_scale_mode, star_error_scales

    enable_float64()
    stages = _as_log(log)
    if sampler is not None:
        sampler_spec(sampler)  # unknown names fail before any work
    if continuum not in ("marginalise", "sample", "profile"):
        raise StellarinfError(f"continuum must be 'marginalise', 'sample' or 'profile', got {continuum!r}")
    if emulator_error not in ("modes", "white"):
        raise StellarinfError(f"emulator_error must be 'modes' or 'white', got {emulator_error!r}")
    check_error_scale_mode(error_scale, StellarinfError)
    if chains < 1 or draws < 1 or warmup < 0 or n_starts < 1:
        raise StellarinfError(
            f"need chains >= 1, draws >= 1, warmup >= 0 and n_starts >= 1 (got {chains}, {draws}, {warmup}, {n_starts})"
        )
    prior_list = prior_requests(priors)  # syntax errors before any heavy work

    stages.start("read", f"reading {spectrum if not hasattr(spectrum, 'flux') else 'the spectrum'}")
    spec, input_name, checksum = read_input(spectrum, resolution=resolution, read_options=read_options)
    validate_for_fit(spec, 0)  # usable pixels and flux with structure, before the model loads
    stages.done(f"{spec.n_pix} pixels, {spec.wavelength.min():.1f}–{spec.wavelength.max():.1f} Å")

    emulator, emulator_reason = resolve_emulator(emulator, spec)
    labels = _emulator_labels(emulator, emulator_name)
    label = labels[0] if len(labels) == 1 else " + ".join(labels)
    stages.start("load", f"loading the {label!r} emulator and building the observation model")
    if emulator_reason:
        stages.note(f"emulator: {label} ({emulator_reason})")
    models = load_models(emulator)
    model = models[0]
    if not (spec.is_multi_arm or len(models) > 1):
        spec, resolution, degraded = match_model_resolution(spec, model, resolution, degrade_to_model)
        if degraded:
            stages.note(degraded)
    elif degrade_to_model:
        raise SpectrumError(
            "degrade_to_model works on a spectrum of one arm; degrade each arm before combining them "
            "(stellarinf.observe.degrade) or fit the arms one at a time"
        )
    fixed_values = {}
    for m_ in models:
        fixed_values.update(validate_fixed(fixed or {}, m_, rv_max=rv_max, vsini_max=vsini_max, vmacro_max=vmacro_max))
    multi = spec.is_multi_arm or len(models) > 1
    if multi:  # each arm its own physics error (the measured window it overlaps most)
        per_arm = {int(a.segments[0]): resolve_physics_error(physics_error, a, models) for a in spec.arms()}
        phys = {seg: term for seg, (term, _, _) in per_arm.items()}
        phys = None if all(t is None for t in phys.values()) else phys
        # each arm's label floor; the summary's is their information-weighted mean (inference.arm_combination)
        label_floor = {str(seg): floor for seg, (_, floor, _) in per_arm.items()}
        floor_source = {str(seg): source for seg, (_, _, source) in per_arm.items()}
    else:
        phys, label_floor, floor_source = resolve_physics_error(physics_error, spec, models)
    borrowed = borrowed_floor_note(floor_source)
    if borrowed:
        stages.note(borrowed)
    bands = []
    if mask_tellurics:
        spec, bands = mask_telluric_bands(spec)
        if bands:
            stages.note("masked telluric bands: " + "; ".join(bands))
    left_out = physics_ranges_left_out(phys, spec.wavelength)
    if left_out:
        stages.note(physics_ranges_note(left_out))
    build = dict(
        resolution=resolution,
        fit_resolution=fit_resolution,
        continuum=continuum,
        continuum_degree=continuum_degree,
        rv_max=rv_max,
        vsini_max=vsini_max,
        vmacro_max=vmacro_max,
        jitter=jitter,
        fixed=fixed_values,
        priors=prior_list,
        error_modes=emulator_error == "modes",
        physics_error=phys,
    )
    if multi:
        build["rv_offsets"] = rv_offsets
    elif rv_offsets:
        raise StellarinfError(
            "rv_offsets needs a spectrum with several arms (Spectrum.from_arms / stellarinf fit --arms)"
        )
    fit_model = models if multi else model
    spec, obs, problem = build_problem(fit_model, spec, **build)
    reason = "given"
    if sampler is None:
        # the slowest model sets the pace: the first whose own choice is not NUTS, else NUTS
        choices = [choose_sampler(m_, n_free=problem.n_free) for m_ in models]
        sampler, reason = next((c for c in choices if c[0] != "nuts"), choices[0])
    # a rebuild (outliers masked) keeps this degree: "auto" on the cropped spectrum it gets could give another
    # (GALAH IR: 315 Å uncropped → 8, 290 Å cropped → 7), another model and another compile of every program
    build["continuum_degree"] = int(obs.continuum_degree)
    n_used = int(np.sum(np.asarray(obs.weight) > 0))
    held = {**{k: float(v) for k, v in obs.fixed}, **{k: float(v) for k, v in problem.fixed.items()}}
    stages.done(
        f"{n_used} pixels, S/N ≈ {spec.snr():.0f}, {problem.n_free} free parameters"
        + (f" ({', '.join(f'{k} held at {v:g}' for k, v in fixed_values.items())})" if fixed_values else "")
    )
    if reason != "given":
        stages.note(f"sampler: {sampler} ({reason})")

    stages.start("map", f"MAP ({n_starts} starts)")
    with stages.heartbeat("MAP: compiling and running the optimiser") as beat:
        m = find_map(problem, n_starts=n_starts, seed=seed, progress=beat.say)
        scales = star_error_scales(obs, m.params) if error_scale == "star" else ()
        scaled = any(s is not None for s in scales)
        if scaled:  # the emulator's error at this star, held fixed from here on (observe.error_scale)
            obs, problem = _with_scales(obs, problem, scales)
        n_outliers = 0
        if clip_outliers:
            beat.say("MAP: masking outlier pixels")
            clipped, n_outliers = mask_outliers(spec, obs, m.params)
            if n_outliers:
                spec, obs, problem = build_problem(fit_model, clipped, **build)
                if scaled:
                    obs, problem = _with_scales(obs, problem, scales)
                n_used = int(np.sum(np.asarray(obs.weight) > 0))
        if scaled or n_outliers:
            # another error scale or a few pixels fewer hardly move the optimum: the best start is polished again
            # (in the programs already compiled), not searched for anew
            beat.say("MAP: polishing the best start again")
            m = refine_map(problem, m)
    stages.done(
        f"log posterior {m.log_posterior:.1f}, {m.n_starts_agreeing}/{n_starts} starts agree "
        f"(the best {carried_to_convergence(n_starts)} carried to convergence)"
        + (f"; {n_outliers} outlier pixels (> 5σ) masked" if n_outliers else "")
        + (f"; emulator error scaled to this star ({_scales_text(scales)})" if scaled else "")
        + ("; the best start polished again" if scaled or n_outliers else "")
    )

    stages.start("laplace", "Laplace approximation")
    with stages.heartbeat("Laplace: compiling and computing the curvature at the mode"):
        lap = laplace(problem, m, seed=seed)
    stages.done(f"Hessian {'positive definite' if lap.hessian_ok else 'regularised'}")

    spec_s = sampler_spec(sampler)
    desc = (
        f"{sampler}: {chains} chains × ({warmup} warm-up + {draws} draws)"
        if spec_s.uses_warmup
        else f"{sampler}: {chains} × {draws} proposals"
        if sampler == "laplace-is"
        else f"{sampler}: {chains} × {draws} draws"
    )
    stages.start("sampling", desc)
    fallback = None
    try:
        post = sample(
            problem,
            sampler,
            chains=chains,
            draws=draws,
            warmup=warmup,
            seed=seed,
            init=lap,
            progress=progress,
            max_seconds=None if max_minutes is None else 60.0 * float(max_minutes),
            draw_log_density=draw_log_density,
        )
    except SamplerBudgetExceeded as exc:
        fallback = str(exc)
        stages.note(f"warning: {fallback}")
        stages.note(f"falling back to laplace-is: {chains} × {draws} proposals")
        sampler, reason = "laplace-is", f"{sampler} stopped on its wall-clock budget ({max_minutes:g} min)"
        spec_s = sampler_spec(sampler)
        post = sample(problem, sampler, chains=chains, draws=draws, seed=seed, init=lap, progress=progress)
    t = post.tuning
    if "pareto_k" in t:
        detail = (
            f"Pareto k {t['pareto_k']:.2f} (reliable below {t['pareto_k_threshold']:.2f}), "
            f"importance ESS {t['importance_ess']:.0f} of {t.get('n_proposals', chains * draws)} proposals"
        )
    elif spec_s.is_mcmc:
        detail = f"{post.n_divergent} divergences"
    else:
        detail = ""
    if "lp_skipped" in t:
        stages.note(f"note: {t['lp_skipped']}")
    stages.done(detail)

    resolution_used = obs_resolution(obs, resolution, spec)
    settings = {
        "run_id": uuid.uuid4().hex,
        "input_file": input_name,
        "input_sha256": checksum,
        "emulator": label,
        "emulator_kind": emulator_kind(model),
        "emulator_reason": emulator_reason or "given",
        "sampler": sampler,
        "sampler_reason": reason,
        "sampler_fallback": fallback,
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "chains": int(chains),
        "draws": int(draws),
        "warmup": int(warmup) if spec_s.uses_warmup else 0,
        "n_starts": int(n_starts),
        "seed": int(seed),
        "draw_log_density": "lp" in post.stats,  # computed (with draw_log_density=None: if it was cheap)
        "priors": {n: p.to_json() for n, p in zip(problem.names, problem.prior_specs)},
        "prior_requests": _prior_texts(priors),
        "fixed": fixed_values,
        "held": held,
        "resolution": resolution_used,
        "resolution_source": "given"
        if resolution is not None
        else ("file" if spec.resolution is not None and not multi else "spectrum arms" if multi else "none"),
        "fit_resolution": bool(fit_resolution),
        "degraded_from_resolution": spec.meta.get("degraded_from_resolution"),
        "continuum": continuum,
        "continuum_degree": int(obs.continuum_degree),
        "crop_margin_kms": crop_margin_kms(rv_max),
        "rv_max": float(rv_max),
        "vsini_max": float(vsini_max),
        "vmacro_max": float(vmacro_max),
        "emulator_error": emulator_error,
        # per arm: s at the first MAP's labels, the factor on the emulator's error table and modes (None: the
        # table as measured; "box" or no measured scale)
        "error_scale": {"mode": error_scale, "scales": list(scales) if scaled else None},
        "jitter": bool(jitter),
        "physics_error": _physics_setting(phys),
        "physics_label_floor": label_floor,
        "physics_label_floor_source": floor_source,
        "telluric_bands_masked": bands,
        "physics_ranges_left_out": left_out,
        "outlier_pixels_masked": n_outliers,
        "read_options": {k: str(v) for k, v in (read_options or {}).items()},
        "n_pixels_used": n_used,
        # what the reader read or assumed (medium, wavelength unit, and where from), where the Spectrum records it
        "spectrum_provenance": spec.provenance()
        if hasattr(spec, "provenance")
        else {"source": spec.meta.get("source")},
        "stellarinf_version": _version(),
    }
    if multi:
        settings["arms"] = arm_settings(obs, models, labels if len(labels) == len(models) else [label] * len(models))
        settings["rv_offsets"] = bool(rv_offsets)
    attrs = {
        "settings": json.dumps(settings, default=_json_default, sort_keys=True),
        "run_id": settings["run_id"],
        "input_file": input_name,
        "input_sha256": checksum,
        "emulator": label,
        "sampler": sampler,
        "emulator_error": emulator_error,
        "continuum": continuum,
        "resolution": "none"
        if resolution_used is None
        else (json.dumps(resolution_used) if isinstance(resolution_used, dict) else resolution_used),
        "fixed": json.dumps(held),
        "spectrum": input_name,
    }
    idata = res.to_inference_data(post, problem, seed=seed, attrs=attrs)
    medium_msg = medium_warning(idata, spec)
    if medium_msg:
        stages.note(f"warning: {medium_msg}")
        idata.posterior.attrs["medium_warning"] = medium_msg  # the summary's global flag air_vacuum
    table = stamp_table(res.summary_table(idata), settings)
    diagnostics = diagnose(table, post)
    depth_msg = tree_depth_warning(post)
    tio_msg = tio_warning(table, models)
    if phys is not None:
        from .observe.physics_error import unlike_sun_note

        unlike = unlike_sun_note({**(fixed_values or {}), **{str(r["name"]): float(r["p50"]) for r in table}})
        if unlike:
            stages.note(unlike)
            diagnostics["notes"] = [unlike]
    diagnostics["warnings"] = [w for w in (medium_msg, fallback, depth_msg, tio_msg) if w]
    for msg, word in ((depth_msg, "tree_depth"), (tio_msg, "no_tio")):
        if msg:
            stages.note(f"warning: {msg}")
            flags = [f for f in str(table.meta.get("FLAGS", "")).split(",") if f and f != "none"]
            table.meta["FLAGS"] = ",".join(flags + [word])
    return FitResult(
        idata=idata,
        summary=table,
        map=m,
        laplace=lap,
        settings=settings,
        diagnostics=diagnostics,
        timings=dict(stages.timings),
        problem=problem,
        posterior=post,
    )


def obs_resolution(obs, resolution, spec):
    """The resolving power used: one R (a per-pixel R(λ) as {"per_pixel": True, "min", "median", "max"}), or
    {arm id (text): that} for a multi-arm fit."""
    if hasattr(obs, "arms"):
        return {str(k): a.resolution_record for k, a in zip(obs.arm_ids, obs.arms)}
    if resolution is None and spec.resolution is not None:
        return obs.resolution_record
    return None if resolution is None else float(resolution)


def _unlike_sun_row(row, fixed_values) -> str | None:
    """:func:`~stellarinf.observe.physics_error.unlike_sun_note` for one star's row of :func:`fit_spectra` or
    :func:`~stellarinf.joint_pipeline.fit_joint` (a dict; ``fixed_values`` stand in for labels held fixed)."""
    from .observe.physics_error import SUN, unlike_sun_note

    if row.get("status", "ok") != "ok":
        return None
    return unlike_sun_note({**fixed_values, **{n: float(row[n]) for n in SUN if n in row}})


def _physics_setting(phys):
    if phys is None:
        return None
    if isinstance(phys, Mapping):
        return {str(k): _physics_setting(v) for k, v in phys.items()}
    return [phys[0], phys[1], [list(r) for r in (phys[2] if len(phys) > 2 else ())]]


def _emulator_labels(emulator, emulator_name) -> list[str]:
    if emulator_name:
        return [str(emulator_name)]
    items = emulator if isinstance(emulator, (list, tuple)) else [emulator]
    return [str(e) if isinstance(e, (str, os.PathLike)) else getattr(e, "name", type(e).__name__) for e in items]


def _version() -> str:
    from . import __version__

    return __version__


# ------------------------------------------------------------------------------------------- many spectra
@dataclasses.dataclass
class BatchResult:
    """What :func:`fit_spectra` returns: ``table`` (one row per input, in order: ``spectrum``, ``status``
    (``ok`` or ``failed``), ``error`` (why it failed), ``input_file``, ``input_sha256``, medians/sd/percentiles,
    diagnostics, flags),
    ``idatas`` (spectrum id → InferenceData, fitted ones only), ``settings``."""

    table: Any
    idatas: dict
    settings: dict

    @property
    def failed(self) -> dict[str, str]:
        return {str(r["spectrum"]): str(r["error"]) for r in self.table if r["status"] != "ok"}

    @property
    def unreliable(self) -> dict[str, list[str]]:
        """Fitted spectra whose result should not be used as it is (the rule of :func:`diagnose`), with why."""
        out = {}
        for r in self.table:
            reasons = row_unreliable(str(r["flags"])) if r["status"] == "ok" and "flags" in self.table.colnames else []
            if reasons:
                out[str(r["spectrum"])] = reasons
        return out

    def write(self, prefix) -> list[Path]:
        """``PREFIX_results.fits`` + ``.csv`` (one row per spectrum) and ``PREFIX_<id>.nc`` per fitted spectrum,
        as one set (see :meth:`FitResult.write`)."""
        from .inference.results import write_inference_data_to, write_table_to
        from .io.atomic import atomic_file_set, remove_stale_temporaries

        prefix = output_prefix(prefix)
        fits_path = prefix.with_name(prefix.name + "_results.fits")
        csv_path = prefix.with_name(prefix.name + "_results.csv")
        ncs = {sid: prefix.with_name(f"{prefix.name}_{sid}.nc") for sid in self.idatas}
        paths = [fits_path, csv_path, *ncs.values()]
        for p in paths:
            remove_stale_temporaries(p)
        table = self.table.copy(copy_data=False)
        table.meta.update(
            {
                "RUNID": self.settings["run_id"],
                "SETTINGS": json.dumps(self.settings, default=_json_default, sort_keys=True),
            }
        )
        csv_table = table.copy()
        csv_table["run_id"] = self.settings["run_id"]
        with atomic_file_set(paths) as tmp:
            write_table_to(table, tmp[fits_path], "fits")
            write_table_to(csv_table, tmp[csv_path], "ascii.csv")
            for sid, path in ncs.items():
                write_inference_data_to(self.idatas[sid], tmp[path])
        return paths


def row_unreliable(flags: str) -> list[str]:
    """Why a batch row is unreliable, from its ``flags`` text (``"GLOBAL,FLAGS;label:flag,flag;..."``): the same
    rule as :func:`diagnose` for one spectrum (pareto_k, divergences, R-hat: :func:`unconverged_labels`)."""
    from .inference.results import unconverged_labels

    global_flags, label_flags = set(), {}
    for part in filter(None, flags.split(";")):
        if ":" in part:
            name, words = part.split(":", 1)
            label_flags[name] = words
        else:
            global_flags.update(part.split(","))
    rhat = unconverged_labels(label_flags, global_flags)
    reasons = [f for f in ("pareto_k", "divergences") if f in global_flags]
    return reasons + ([f"rhat ({', '.join(rhat)})"] if rhat else [])


def _spectrum_id(item, i: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name.split(".")[0] or f"spectrum_{i}"
    return f"spectrum_{i}"


def fit_spectra(
    spectra: Sequence,
    *,
    emulator=DEFAULT_EMULATOR,
    sampler: str | None = None,
    ids: Sequence[str] | None = None,
    priors=None,
    fixed: Mapping[str, float] | None = None,
    resolution: float | None = None,
    continuum: str = DEFAULT_CONTINUUM,
    continuum_degree: int | str = "auto",
    rv_max: float = 300.0,
    vsini_max: float = 60.0,
    vmacro_max: float = 15.0,
    emulator_error: str = "modes",
    error_scale: str = "star",
    jitter: bool = False,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 500,
    n_starts: int = DEFAULT_STARTS,
    seed: int = 0,
    progress: bool = True,
    keep_idata: bool = True,
    read_options: Mapping | None = None,
    emulator_name: str | None = None,
    log: Callable[[str], Any] | None = None,
    physics_error="auto",
    mask_tellurics: bool = True,
    clip_outliers: bool = True,
    max_minutes: float | None = DEFAULT_SAMPLER_MINUTES,
) -> BatchResult:
    """Fit many spectra with one emulator and one set of settings; returns a :class:`BatchResult`.

    Same arguments as :func:`fit_spectrum` (``spectra``: paths and/or Spectrum objects). The model is loaded once;
    MAP + Laplace run for all spectra together (:func:`stellarinf.inference.batch.fit_batch`: vmapped across spectra on
    accelerators), then the sampler per spectrum. With ``error_scale="star"`` (the default) and a model that measured
    its error scale, each star's emulator error is scaled at its first MAP and its MAP and Laplace redone from there,
    as :func:`fit_spectrum` does (the scale is the table's ``error_scale`` column); with ``clip_outliers`` its pixels
    more than 5 total σ off that MAP's model (at most 2 %) are weighted out before the refit (their number: the
    ``outlier_pixels_masked`` column). ``max_minutes`` is each star's NUTS budget: a star past it is drawn by
    laplace-is instead (its row's ``sampler`` and ``sampler_fallback`` say so, and the log). A spectrum that cannot be
    fitted (unreadable, outside the model's range, no usable flux, a failure in its fit) gets a row with
    ``status="failed"`` and the reason in ``error``; the others are still fitted.
    """
    from . import enable_float64
    from .inference.batch import fit_batch
    from .observe.error_scale import check_error_scale_mode

    enable_float64()
    spectra = list(spectra)
    if not spectra:
        raise StellarinfError("no spectra to fit; pass at least one file")
    ids = [_spectrum_id(s, i) for i, s in enumerate(spectra)] if ids is None else [str(i) for i in ids]
    if len(ids) != len(spectra):
        raise StellarinfError(f"{len(ids)} ids for {len(spectra)} spectra; give one id per spectrum")
    if len(set(ids)) != len(ids):
        ids = [f"{sid}_{i}" for i, sid in enumerate(ids)]
    prior_list = prior_requests(priors)
    echo = log or (lambda s: None)

    read = []
    failures: dict[str, str] = {}
    for sid, item in zip(ids, spectra):  # read every input before loading the model: bad files are reported at once
        try:
            spec, name, checksum = read_input(item, resolution=resolution, read_options=read_options)
            validate_for_fit(spec, 0)
            if spec.is_multi_arm:
                raise SpectrumError(
                    "a spectrum with several arms is fitted on its own: use fit_spectrum (CLI: stellarinf fit --arms "
                    "FILES for one star)"
                )
            read.append((sid, spec, name, checksum))
        except StellarinfError as exc:
            failures[sid] = f"{type(exc).__name__}: {exc}"
            echo(f"{sid}: skipped ({exc})")
    emulator, emulator_reason = resolve_emulator(emulator)
    if emulator_reason and read:
        echo(f"emulator: {emulator} ({emulator_reason})")
    check_error_scale_mode(error_scale, StellarinfError)
    model = load_model(emulator) if read else None
    label = emulator_name or (str(emulator) if isinstance(emulator, (str, os.PathLike)) else type(emulator).__name__)
    reason = "given"
    if sampler is None and model is not None:
        sampler, reason = choose_sampler(model)
    fixed_values = (
        validate_fixed(fixed or {}, model, rv_max=rv_max, vsini_max=vsini_max, vmacro_max=vmacro_max)
        if model is not None
        else {}
    )
    problems, good, inputs, provenance, physics, left_out = [], [], {}, {}, {}, {}
    for sid, spec, name, checksum in read:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                if mask_tellurics:
                    spec, _ = mask_telluric_bands(spec)
                phys = resolve_physics_error(physics_error, spec, [model])[0]
                _, _, problem = build_problem(
                    model,
                    spec,
                    resolution=resolution,
                    continuum=continuum,
                    continuum_degree=continuum_degree,
                    rv_max=rv_max,
                    vsini_max=vsini_max,
                    vmacro_max=vmacro_max,
                    jitter=jitter,
                    fixed=fixed_values,
                    priors=prior_list,
                    error_modes=emulator_error == "modes",
                    physics_error=phys,
                )
            problems.append(problem)
            good.append(sid)
            inputs[sid] = {"input_file": name, "input_sha256": checksum}
            provenance[sid] = spec.provenance()  # medium, wavelength unit and who said so
            physics[sid] = _physics_setting(phys)
            left_out[sid] = physics_ranges_left_out(phys, spec.wavelength)
        except StellarinfError as exc:
            failures[sid] = f"{type(exc).__name__}: {exc}"
            echo(f"{sid}: skipped ({exc})")
    note = physics_ranges_note(*left_out.values())
    if note:
        echo(note)
    settings = {
        "run_id": uuid.uuid4().hex,
        "emulator": label,
        "emulator_kind": emulator_kind(model) if model is not None else "",
        "emulator_reason": emulator_reason or "given",
        "sampler": sampler or "",
        "sampler_reason": reason,
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "n_starts": n_starts,
        "seed": seed,
        "priors": _prior_texts(priors),
        "fixed": fixed_values,
        "resolution": resolution,
        "continuum": continuum,
        "continuum_degree": continuum_degree,
        "crop_margin_kms": crop_margin_kms(rv_max),
        "rv_max": rv_max,
        "vsini_max": vsini_max,
        "vmacro_max": vmacro_max,
        "emulator_error": emulator_error,
        "error_scale": {"mode": error_scale, "scales": None},  # per star: the table's error_scale column
        "jitter": jitter,
        "clip_outliers": bool(clip_outliers),
        "mask_tellurics": bool(mask_tellurics),
        # per spectrum: the physics-error term its likelihood used, and the ranges of it left out of the fit
        "physics_error": physics,
        "physics_ranges_left_out": left_out,
        "inputs": inputs,
        "stellarinf_version": _version(),
        "read_options": {k: str(v) for k, v in (read_options or {}).items()},
        "spectrum_provenance": provenance,
    }
    rows_by_id, idatas = {}, {}
    if problems:
        table, fitted = fit_batch(
            problems,
            good,
            method=sampler,
            chains=chains,
            warmup=warmup,
            draws=draws,
            n_starts=n_starts,
            seed=seed,
            progress=progress,
            keep_idata=keep_idata,
            rescale=_batch_restart(error_scale == "star", clip_outliers),
            max_seconds=None if max_minutes is None else 60.0 * float(max_minutes),
        )
        for row in table:
            rows_by_id[str(row["spectrum"])] = {c: row[c] for c in table.colnames}
        specs = {sid: spec for sid, spec, _, _ in read}
        for sid, row in rows_by_id.items():  # each spectrum's warnings; air/vacuum also a flag and a column of the row
            if row.get("sampler_fallback"):
                echo(f"{sid}: warning: {row['sampler_fallback']}; drawn by {row['sampler']} instead")
            msg = (
                rv_medium_message(row["rv"], row.get("rv_err", math.nan), specs[sid])
                if row.get("status", "ok") == "ok" and "rv" in row
                else None
            )
            if msg:
                row["flags"] = ";".join(filter(None, ["air_vacuum", str(row.get("flags", ""))]))
                row["warning"] = msg
                echo(f"{sid}: warning: {msg}")
            note = _unlike_sun_row(row, fixed_values) if physics.get(sid) is not None else None
            if note:  # as fit_spectrum's stage note: the Sun-measured floor is a lower bound for this star
                row["note"] = note
                echo(f"{sid}: {note}")
        for sid, idata in zip(good, fitted):
            if idata is None:
                continue
            if rows_by_id.get(sid, {}).get("warning"):
                idata.posterior.attrs["medium_warning"] = rows_by_id[sid]["warning"]
            idata.posterior.attrs.update(
                {
                    "run_id": settings["run_id"],
                    "emulator": label,
                    "sampler": str(rows_by_id[sid].get("sampler", sampler)),
                    "settings": json.dumps(settings, default=_json_default, sort_keys=True),
                    "fixed": json.dumps(fixed_values),
                    **inputs[sid],
                }
            )
            idatas[sid] = idata
    rows = []
    files = {sid: (name, checksum) for sid, _, name, checksum in read}
    for sid, item in zip(ids, spectra):
        name, checksum = files.get(sid, (str(item) if isinstance(item, (str, os.PathLike)) else "", ""))
        source = {"input_file": name, "input_sha256": checksum}
        if sid in rows_by_id and rows_by_id[sid].get("status", "ok") == "ok":
            rows.append({**rows_by_id[sid], "status": "ok", "error": "", **source})
        else:
            err = failures.get(sid) or (rows_by_id.get(sid, {}).get("error") or "not fitted")
            rows.append({"spectrum": sid, "status": "failed", "error": str(err), **source})
    from .inference.batch import rows_to_table

    out = rows_to_table(rows, first=("spectrum", "status", "error", "input_file", "input_sha256"))
    out.meta["METHOD"] = sampler or ""
    return BatchResult(table=out, idatas=idatas, settings=settings)
