"""What a Dask worker runs: fit a chunk of stars with :func:`stellarinf.fit_spectrum`, writing each star's result
file atomically as soon as it is done.

The emulator is loaded once per worker process and kept in :data:`_MODELS` (keyed by the emulator's name; for a
set of models, one per arm, each member the first time a star's arm needs it), so the
compiled programs of one model stay warm across the chunks a worker fits (JAX caches them per program, and the
problem is a jit argument: stars of one pixel count reuse one program, whatever the numbers of their own priors, which
are array leaves of the problem; a prior of another kind, e.g. Gaussian where the others are uniform, compiles once).

Result files, in ``OUT/stars``: ``<id>.json`` (a fitted star: the summary rows and diagnostics) or
``<id>.failed.json`` (why it could not be fitted). Each is written whole or not at all
(:func:`stellarinf.io.atomic.write_json_atomic`), so a run killed at any moment leaves only complete files.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
import traceback
import warnings
import zlib
from pathlib import Path
from typing import Any

_MODELS: dict[str, Any] = {}  # emulator name -> loaded model, per worker process

RESULT_FORMAT = "stellarinf-catalog-star"
RESULT_VERSION = 1


def posterior_path(out_dir, star_id: str) -> Path:
    """``OUT/stars/<id>.nc``: the star's posterior draws (with ``save_posterior``)."""
    return Path(out_dir) / "stars" / f"{star_id}.nc"


def star_paths(out_dir, star_id: str) -> tuple[Path, Path]:
    """``(OUT/stars/<id>.json, OUT/stars/<id>.failed.json)``."""
    stars = Path(out_dir) / "stars"
    return stars / f"{star_id}.json", stars / f"{star_id}.failed.json"


def star_seed(seed: int, star_id: str) -> int:
    """The star's own seed: from the run's seed and its id, so a star gets the same numbers whatever chunk, worker
    or restart fits it."""
    return (int(seed) + zlib.crc32(star_id.encode("utf-8"))) % (2**31 - 1)


@dataclasses.dataclass(frozen=True)
class PickledModel:
    """A model object on its way to the workers, as bytes (cloudpickle): unpickled by :func:`worker_model` after
    float64 is on. Why not the object itself: Dask unpickles arguments before the task runs, and JAX arrays unpickled
    in a process where float64 is still off come back float32 (a float64 model would silently lose precision)."""

    data: bytes

    @classmethod
    def of(cls, model) -> "PickledModel":
        import cloudpickle  # by value where it must (a model class defined in a notebook)

        return cls(cloudpickle.dumps(model))


@dataclasses.dataclass(frozen=True)
class ModelSet:
    """A set of shipped models, one per arm (:data:`~stellarinf.shipped_models.MODEL_SETS`): each star gets the
    members that cover its arms (:func:`star_model`)."""

    name: str


def worker_model(name: str, ref):
    """The model named ``name``, loaded once per process (``ref``: a name or directory to load, a
    :class:`PickledModel`, or the model itself); a set's name stays a :class:`ModelSet` (its members load per star)."""
    from ..shipped_models import MODEL_SETS

    if isinstance(ref, str) and ref in MODEL_SETS:
        return ModelSet(ref)
    model = _MODELS.get(name)
    if model is None:
        from .. import enable_float64
        from ..pipeline import load_model

        enable_float64()  # before any array of the model is made
        model = load_model(pickle.loads(ref.data) if isinstance(ref, PickledModel) else ref)
        _MODELS[name] = model
    return model


def fit_chunk(stars: list[dict], out_dir: str, emulator_name: str, emulator_ref, fit_kwargs: dict) -> list[dict]:
    """Fit ``stars`` (dicts of :class:`~stellarinf.catalog.manifest.StarRequest` fields) one after another; write
    each result file as it is done; return one short record per star (id, status, flag words, seconds)."""
    from .. import enable_float64

    enable_float64()
    model = worker_model(emulator_name, emulator_ref)
    return [fit_one(star, model, out_dir, emulator_name, fit_kwargs) for star in stars]


def star_model(model, spectrum, read_options=None):
    """The model(s) that fit ``spectrum`` (a path or a read spectrum): ``model`` itself, or for a :class:`ModelSet`
    its member for each arm (loaded once per process), one model or a list in the spectrum's arm order."""
    if not isinstance(model, ModelSet):
        return model
    from ..pipeline import read_input, resolve_emulator

    spec = read_input(spectrum, read_options=read_options)[0] if isinstance(spectrum, str) else spectrum
    names, _ = resolve_emulator(model.name, spec)
    if isinstance(names, str):
        return worker_model(names, names)
    return [worker_model(n, n) for n in names]


def fit_one(star: dict, model, out_dir: str, emulator_name: str, fit_kwargs: dict) -> dict:
    from ..io.atomic import write_json_atomic
    from ..pipeline import fit_spectrum

    done, failed = star_paths(out_dir, star["id"])
    if done.exists():  # fitted by an earlier attempt of this chunk (a worker that died after writing it)
        return brief(read_json(done))
    kw = dict(fit_kwargs)
    save_posterior = bool(kw.pop("save_posterior", False))
    seed = star_seed(kw.pop("seed", 0), star["id"])
    priors = merge_priors(kw.pop("priors", []), star.get("priors") or [])
    if star.get("resolution") is not None:
        kw["resolution"] = float(star["resolution"])
    base = {
        "format": RESULT_FORMAT,
        "format_version": RESULT_VERSION,
        "id": star["id"],
        "path": star["path"],
        "request": {"path": star["path"], "resolution": star.get("resolution"), "priors": list(star.get("priors", []))},
        "seed": seed,
    }
    t0 = time.perf_counter()
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            spectrum = spectrum_of(star["path"], kw)
            result = fit_spectrum(
                spectrum,
                emulator=star_model(model, spectrum, kw.get("read_options")),
                emulator_name=emulator_name,
                priors=priors,
                seed=seed,
                draw_log_density=save_posterior,  # only the saved draws' sample_stats.lp need it (half a Laplace fit)
                **kw,
            )
        caught = _unique(str(w.message) for w in ws)
        record = {**base, "status": "ok", "error": "", **result_record(result), "warnings": caught}
        if save_posterior:  # before the JSON: a star with a result file has its draws too
            from ..inference.results import write_inference_data

            write_inference_data(result.idata, posterior_path(out_dir, star["id"]))
            record["posterior_file"] = posterior_path(out_dir, star["id"]).name
        record["seconds"] = time.perf_counter() - t0
        write_json_atomic(done, _finite_or_none(record))
        failed.unlink(missing_ok=True)
    except Exception as exc:  # any failure of one star is that star's, recorded with its reason; the run goes on
        record = {
            **base,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "error_type": type(exc).__name__,
            "traceback": "" if _is_input_error(exc) else traceback.format_exc(limit=8),
            "warnings": caught,
            "seconds": time.perf_counter() - t0,
            "emulator": emulator_name,
            "stellarinf_version": _version(),
        }
        write_json_atomic(failed, _finite_or_none(record))
    return brief(record)


def spectrum_of(path: str, kw: dict):
    """What :func:`~stellarinf.pipeline.fit_spectrum` is given for a star's ``path``: the file itself, or for several
    arm files (joined by :data:`~stellarinf.catalog.manifest.ARM_SEPARATOR`) one multi-arm spectrum read from them
    (the reading options are used here, so they leave ``kw``)."""
    from ..pipeline import read_arms
    from .manifest import ARM_SEPARATOR

    files = path.split(ARM_SEPARATOR)
    if len(files) == 1:
        return path
    return read_arms(files, read_options=kw.pop("read_options", None))


def merge_priors(run_priors, star_priors) -> list:
    """The run's priors with the star's replacing those on the same label (texts ``label=...`` or requests)."""
    from ..inference.priors import parse_prior

    star = [parse_prior(p) if isinstance(p, str) else p for p in star_priors]
    named = {p.name for p in star}
    run = [parse_prior(p) if isinstance(p, str) else p for p in (run_priors or [])]
    return [p for p in run if p.name not in named] + star


def result_record(result) -> dict:
    """The JSON-able content of a :class:`~stellarinf.pipeline.FitResult` for the catalogue: the summary rows
    (every column of ``result.summary``), χ², divergences, the global flag words, the diagnostics and the settings
    that identify the fit (run id, input file and checksum, emulator, sampler, resolution)."""
    table = result.summary
    rows = []
    for r in table:
        row = {}
        for c in table.colnames:
            v = r[c]
            row[c] = str(v) if c in ("name", "unit", "flags") else float(v)
        rows.append(row)
    meta = table.meta
    s = result.settings
    d = result.diagnostics
    return {
        "summary": rows,
        "global_flags": [f for f in str(meta.get("FLAGS", "")).split(",") if f and f != "none"],
        "chi2_reduced": float(meta.get("CHI2RED", math.nan)),
        "vbroad": {k: float(meta[k]) for k in ("VBROAD", "VBROADSD") if k in meta},  # rotation+macro, when not split
        "n_divergent": int(meta.get("NDIVERG", 0)),
        "pareto_k": float(d.get("pareto_k", math.nan)),
        "importance_ess": float(d.get("importance_ess", math.nan)),
        "unreliable": list(d.get("unreliable", [])),
        "notes": list(d.get("notes", [])),  # e.g. a star far from the Sun, whose physics error is not measured
        "run_id": s["run_id"],
        "input_file": s.get("input_file", ""),
        "input_sha256": s.get("input_sha256", ""),
        "emulator": s.get("emulator", ""),
        "sampler": s.get("sampler", ""),
        "sampler_fallback": s.get("sampler_fallback"),
        "resolution_used": s.get("resolution"),
        "n_pixels_used": s.get("n_pixels_used"),
        "timings": {k: float(v) for k, v in result.timings.items()},
        "stellarinf_version": s.get("stellarinf_version", _version()),
    }


def brief(record: dict) -> dict:
    """What the client needs to count progress and flags: id, status, flag words, seconds."""
    words = list(record.get("global_flags", []))
    for row in record.get("summary", []):
        words += [w for w in str(row.get("flags", "")).split(",") if w]
    return {
        "id": record["id"],
        "status": record.get("status", "failed"),
        "flags": sorted(set(words)),
        "unreliable": bool(record.get("unreliable")),
        "seconds": record.get("seconds"),
        "error": record.get("error", ""),
    }


def read_json(path) -> dict:
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))


def _is_input_error(exc) -> bool:
    from ..errors import StellarinfError

    return isinstance(exc, StellarinfError)


def _unique(items) -> list[str]:
    out = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _finite_or_none(obj):
    """NaN/inf → None (JSON has no NaN); recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return _finite_or_none(obj.item())
    except ImportError:  # pragma: no cover
        pass
    return obj


def _version() -> str:
    from .. import __version__

    return __version__
