"""``fit_catalog``: fit a catalogue of spectra on a Dask ``distributed`` cluster, restartable and idempotent.

The client (this process) reads and checks the input (:mod:`stellarinf.catalog.manifest`), checks the run's settings
against ``OUT/settings.json`` of an earlier run, finds the stars that have no result file yet, and hands them to the
workers in chunks of stars of one size (pixel count), a bounded number of chunks at a time (a 100,000-star manifest
never has more than a few chunks in flight). Each worker fits its chunk with :func:`stellarinf.fit_spectrum`
(:mod:`stellarinf.catalog.worker`), writing each star's result file atomically as it is done. At the end the
catalogue is assembled from the result files (:mod:`stellarinf.catalog.assemble`).

Restarting the same command after a kill (of the client, of a worker, of the machine) fits only the stars without a
result file: nothing lost (every finished star is on disk), nothing duplicated (one file per star id, written
whole).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

from ..errors import StellarinfError
from ..pipeline import (
    DEFAULT_CONTINUUM,
    DEFAULT_EMULATOR,
    DEFAULT_SAMPLER_MINUTES,
    DEFAULT_STARTS,
    _physics_setting,
    resolve_physics_error,
)
from .assemble import catalogue_table_columns, flag_counts, write_catalogue
from .manifest import NUISANCE_PRIOR_NAMES, ManifestError, StarRequest, chunks_by_size, read_catalogue
from .worker import PickledModel, brief, fit_chunk, merge_priors, read_json, star_paths

SETTINGS_FILE = "settings.json"
SETTINGS_FORMAT = "stellarinf-catalog"
DEFAULT_CHUNK_SIZE = 16
MAX_RESUBMITS = 2  # a chunk whose input the cluster lost (a killed worker) runs again at most this often
# the settings that shape every star's result: a restart must use the same ones (else stars would be mixed)
RESULT_SETTINGS = (
    "emulator",
    "sampler",
    "chains",
    "draws",
    "warmup",
    "n_starts",
    "seed",
    "priors",
    "fixed",
    "resolution",
    "continuum",
    "continuum_degree",
    "rv_max",
    "vsini_max",
    "vmacro_max",
    "emulator_error",
    "error_scale",
    "jitter",
    "physics_error",
    "mask_tellurics",
    "clip_outliers",
    "max_minutes",
    "read_options",
)


# what a run in a folder written before a setting existed was fitted with: it resumes with that value
SETTINGS_BEFORE = {"error_scale": "box"}  # the emulator's error table as measured (before the thirty-eighth session)


class SettingsMismatch(StellarinfError):
    """A restart asked for other settings than the run in the output folder was made with."""


@dataclasses.dataclass
class CatalogResult:
    """What :func:`fit_catalog` returns.

    Attributes:
        table: the catalogue (astropy ``Table``, one row per star in input order; as written to
            ``OUT/catalog.parquet`` and ``OUT/catalog.fits``).
        paths: the catalogue files written.
        out_dir: the output folder (``OUT/stars`` holds one result file per star, ``OUT/settings.json`` the settings).
        settings: the run's settings (also in the catalogue's metadata).
        counts: ``stars`` (in the input), ``ok`` and ``failed`` (in the catalogue), ``fitted_now`` and
            ``failed_now`` (this call), ``skipped`` (had a result already), ``not_retried`` (failed earlier; pass
            ``retry_failed=True`` to try them again), ``missing`` (no result file: the run was stopped).
        flag_counts: how many stars have each flag bit set (:mod:`stellarinf.catalog.flags`).
        dashboard: the Dask dashboard's address, when there was one.
        seconds: wall-clock time of this call; ``stars_per_second``: stars fitted (or failed) per second by this
            call's cluster.
    """

    table: Any
    paths: list[Path]
    out_dir: Path
    settings: dict
    counts: dict
    flag_counts: dict
    dashboard: str | None = None
    seconds: float = 0.0
    stars_per_second: float = math.nan

    @property
    def failed(self) -> dict[str, str]:
        """``{id: why}`` of the stars that could not be fitted."""
        return {str(r["id"]): str(r["error"]) for r in self.table if r["status"] != "ok"}


def emulator_for_workers(emulator, emulator_name: str | None = None) -> tuple[str, Any]:
    """``(name, ref)``: the emulator's name (the catalogue's ``emulator`` column, the workers' cache key) and what the
    workers get: a name or model directory they load themselves (once per process), or a model object (sent to every
    worker once)."""
    from ..pipeline import resolve_emulator
    from ..shipped_models import MODEL_SETS

    if isinstance(emulator, str) and emulator in MODEL_SETS:  # each worker picks the members per star
        return str(emulator_name or emulator), emulator
    emulator, _ = resolve_emulator(emulator)
    if isinstance(emulator, (str, os.PathLike)):
        return str(emulator_name or emulator), str(emulator)
    if isinstance(emulator, (list, tuple)):
        raise StellarinfError(
            "fit_catalog fits every star with one emulator or one set of them (a model per arm: "
            f"{', '.join(sorted(MODEL_SETS))}); give one of those, not a list"
        )
    return str(emulator_name or type(emulator).__name__), emulator


def model_facts(ref) -> tuple[list[str], str]:
    """``(label names, kind)`` of the emulator without loading its weights (a model directory's ``model.json``), so
    a bad emulator name or a prior on an unknown label is reported before any work."""
    if not isinstance(ref, str):
        from ..pipeline import emulator_kind

        return list(ref.label_space.names), emulator_kind(ref)
    from ..emulators.model_io import read_model_document
    from ..emulators.registry import NAMED_MODEL_KINDS, NAMED_MODELS, model_path
    from ..shipped_models import MODEL_SETS

    if ref in MODEL_SETS:  # a set's members share one label set and one network kind
        facts = {(tuple(labels), kind) for labels, kind in (model_facts(m) for m in MODEL_SETS[ref])}
        if len(facts) != 1:
            raise StellarinfError(f"the models of the {ref!r} set do not share one label set and network kind")
        labels, kind = next(iter(facts))
        return list(labels), kind
    path = model_path(ref)
    if ref in NAMED_MODELS and not (path / "model.json").exists():
        raise StellarinfError(
            f"the {ref!r} emulator is not there yet ({path} has no model.json); train it with `stellarinf train "
            f"--model {NAMED_MODEL_KINDS[ref]} -o {path}` or pass the path of a trained model directory"
        )
    doc = read_model_document(path)
    return [str(entry["name"]) for entry in doc["label_space"]], str(doc["architecture"].get("kind", ""))


# settings recorded in OUT/settings.json that are passed to stellarinf.fit_spectrum as they are (the emulator is
# passed as a model, the reading options as read_options)
FIT_SETTINGS = tuple(k for k in RESULT_SETTINGS if k not in ("emulator", "read_options"))


def prior_structure(run_priors, star_priors) -> frozenset[str]:
    """What of a star's priors shapes the compiled programs: the labels with a Gaussian prior, and a v sin i box that
    does not start at 0 (not folded); the numbers are values of the program, not part of it."""
    from ..inference.priors import FOLDED, GAUSSIAN

    merged = merge_priors(run_priors, star_priors)
    return frozenset(p.name for p in merged if p.kind == GAUSSIAN) | frozenset(
        f"{p.name}:unfolded" for p in merged if p.name in FOLDED and p.kind != GAUSSIAN and p.a > 0
    )


def fit_catalog(
    input,
    output,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    emulator=DEFAULT_EMULATOR,
    emulator_name: str | None = None,
    sampler: str | None = None,
    priors: Sequence[str] | str | None = None,
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
    physics_error="auto",
    mask_tellurics: bool = True,
    clip_outliers: bool = True,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 500,
    n_starts: int = DEFAULT_STARTS,
    seed: int = 0,
    max_minutes: float | None = DEFAULT_SAMPLER_MINUTES,
    read_options: Mapping | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    retry_failed: bool = False,
    save_posterior: bool = False,
    progress: bool = True,
    log: Callable[[str], Any] | None = print,
) -> CatalogResult:
    """Fit every star of a catalogue on a Dask cluster; restartable, idempotent; returns a :class:`CatalogResult`.

    Args:
        input: a folder of spectrum files, a glob (``"spectra/*.fits"``), a manifest table (``.csv``, ``.parquet``,
            ``.fits``) with a ``path`` column (relative paths from the manifest's folder) and optional ``id``,
            ``resolution``, ``prior_<label>`` (e.g. ``4.4+-0.1`` or ``5000:6000``) and ``n_pix`` columns, or a list
            of paths. See :mod:`stellarinf.catalog.manifest`.
        output: the output folder: ``OUT/stars/<id>.json`` per fitted star (``<id>.failed.json`` with the reason for
            one that could not be fitted), ``OUT/catalog.parquet`` and ``OUT/catalog.fits`` (one row per star),
            ``OUT/settings.json``.
        workers: the number of Dask worker processes of the local cluster started (and closed) here (default: one
            per NVIDIA GPU, each seeing only its own, on a machine with them, else one per CPU core; at most one per
            chunk); each fits many stars with its compiled programs kept warm (:mod:`stellarinf.catalog.affinity`).
        scheduler: the address of an existing Dask scheduler (``"tcp://host:8786"``, e.g. a dask-jobqueue cluster)
            instead of a local cluster; its workers must see ``output`` and the spectra at the same paths.
        emulator, emulator_name, sampler, priors, fixed, resolution, continuum, continuum_degree, rv_max,
            vsini_max, vmacro_max, emulator_error, error_scale, jitter, physics_error, mask_tellurics, clip_outliers, chains,
            draws, warmup, n_starts, seed, max_minutes, read_options: as for :func:`stellarinf.fit_spectrum`,
            the same for every star (a manifest's ``prior_<label>`` and ``resolution`` override ``priors`` and
            ``resolution`` per star). ``seed``: each star's seed is derived from it and the star's id, so a star
            gets the same numbers whichever worker fits it, in any run. ``sampler="laplace"`` (MAP + Laplace) is
            the fast choice for a survey; None picks one for the emulator and the machine, as ``fit_spectrum`` does.
        chunk_size: stars per task (8-32: enough to keep a worker's compiled programs busy, few enough to spread the
            stars over the workers).
        retry_failed: fit again the stars that failed in an earlier run (default: keep their failure).
        save_posterior: also write each star's posterior draws (ArviZ InferenceData, netCDF) as
            ``OUT/stars/<id>.nc``, before its ``<id>.json`` (stars fitted by an earlier run keep what that run wrote).
            Without it a ``laplace``/``map`` fit skips its draws' log density (``sample_stats.lp``, about half of
            such a fit's time; ``fit_spectrum(draw_log_density=False)``): the catalogue's numbers do not use it.
        progress: a progress bar (stars/s, ETA) on stderr; ``log``: a callable taking a line (default ``print``;
            None: silent): the input, the dashboard's address, the counts of flags at the end.

    Restarting: call again with the same ``input``, ``output`` and settings: the stars with a result file are kept,
    the others are fitted; the catalogue is assembled again from all the files. Other settings than those in
    ``OUT/settings.json`` raise :class:`SettingsMismatch` (use another output folder for other settings).

    Raises:
        StellarinfError (ManifestError, SettingsMismatch, ...): before any work, with a message naming the problem
        and the fix: a manifest without a path column, duplicate ids, an unknown prior label, every file missing,
        an unknown emulator. A star that cannot be fitted is not an error: its row says ``failed`` and why.

    Example::

        >>> import stellarinf
        >>> cat = stellarinf.fit_catalog("spectra/", "survey_out", workers=2, emulator="default-payne",
        ...                              sampler="laplace")
        >>> cat.table["id", "teff_p50", "teff_sd", "flags"]        # also survey_out/catalog.parquet, .fits
        >>> cat.flag_counts                                          # e.g. {"failed": 2, "chi2": 5}
        >>> cat.failed                                               # {id: why}
    """
    t_start = time.perf_counter()
    echo = log or (lambda line: None)
    out = Path(output)
    if chunk_size < 1:
        raise StellarinfError(f"chunk_size must be at least 1, got {chunk_size}")
    if workers is not None and workers < 1:
        raise StellarinfError(f"workers must be at least 1, got {workers}")
    if scheduler is not None and workers is not None:
        raise StellarinfError("give either workers (a local cluster) or scheduler (an existing one), not both")
    if sampler is not None:
        from ..inference.samplers import sampler_spec

        sampler_spec(sampler)  # an unknown name fails before any work
    name, ref = emulator_for_workers(emulator, emulator_name)
    labels, kind = model_facts(ref)
    allowed = [*labels, *NUISANCE_PRIOR_NAMES] + (["ln_jitter"] if jitter else [])
    prior_texts = _prior_texts(priors, allowed)
    catalogue = read_catalogue(input, label_names=allowed)
    for note in catalogue.notes:
        echo(note)
    n_kinds = len({prior_structure(prior_texts, s.priors) for s in catalogue.stars})
    if n_kinds > 1:
        echo(
            f"note: the stars' priors come in {n_kinds} kinds (which labels have a Gaussian prior): the fit's programs "
            "are compiled once per kind, ~1 minute each on a CPU (priors differing only in their numbers share one)"
        )
    reason = "given"
    if sampler is None:
        from types import SimpleNamespace

        from ..pipeline import choose_sampler

        # a star's free parameters: the names a prior may be given for (labels, rv, v sin i, v macro, the jitter)
        model_ref = ref if not isinstance(ref, str) else SimpleNamespace(kind=kind)
        sampler, reason = choose_sampler(model_ref, n_free=len(allowed))
        echo(f"sampler: {sampler} ({reason})")
    settings = {
        "emulator": name,
        "emulator_kind": kind,
        "sampler": sampler,
        "sampler_reason": reason,
        "chains": int(chains),
        "draws": int(draws),
        "warmup": int(warmup),
        "n_starts": int(n_starts),
        "seed": int(seed),
        "priors": prior_texts,
        "fixed": {str(k).lower(): float(v) for k, v in (fixed or {}).items()},
        "resolution": None if resolution is None else float(resolution),
        "continuum": continuum,
        "continuum_degree": continuum_degree,
        "rv_max": float(rv_max),
        "vsini_max": float(vsini_max),
        "vmacro_max": float(vmacro_max),
        "emulator_error": emulator_error,
        "error_scale": error_scale,
        "jitter": bool(jitter),
        # an explicit (floor, fraction[, regions]) as JSON lists, which fit_spectrum reads back as it was given
        "physics_error": physics_error
        if physics_error is None or isinstance(physics_error, str)
        else _physics_setting(resolve_physics_error(physics_error, None)[0]),
        "mask_tellurics": bool(mask_tellurics),
        "clip_outliers": bool(clip_outliers),
        "max_minutes": None if max_minutes is None else float(max_minutes),
        "read_options": {str(k): str(v) for k, v in (read_options or {}).items()},
        "input": catalogue.source,
        "stellarinf_version": _version(),
    }
    check_settings(out, settings, echo)
    state = scan_results(out, catalogue.stars)
    pending = [s for s in catalogue.stars if s.id not in state["ok"] and (retry_failed or s.id not in state["failed"])]
    counts = {
        "stars": len(catalogue.stars),
        "skipped": len(state["ok"]),
        "not_retried": 0 if retry_failed else len(state["failed"]),
        "fitted_now": 0,
        "failed_now": 0,
    }
    echo(
        f"{catalogue.source}: {len(catalogue.stars)} stars; {len(state['ok'])} fitted before, "
        f"{len(state['failed'])} failed before{' (retried)' if retry_failed and state['failed'] else ''}; "
        f"{len(pending)} to fit"
    )
    write_settings(out, settings)
    missing = [s for s in pending if s.missing_files]
    for s in missing:  # a missing file is that star's failure, recorded without a worker
        gone = ", ".join(repr(f) for f in s.missing_files)
        record_failure(out, s, name, "SpectrumError", f"spectrum file {gone} does not exist; check the path")
    counts["failed_now"] += len(missing)
    todo = [s for s in pending if not s.missing_files]
    dashboard, rate = None, math.nan
    if todo:
        # the fit's arguments are the recorded settings (one source), plus what is not a setting
        fit_kwargs = {k: settings[k] for k in FIT_SETTINGS} | {
            "read_options": dict(read_options or {}),
            "progress": False,
            "log": None,
            "save_posterior": bool(save_posterior),
        }
        chunks = chunks_by_size(todo, chunk_size)
        t0 = time.perf_counter()
        dashboard, done = run_chunks(
            chunks,
            out,
            name,
            ref,
            fit_kwargs,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            echo=echo,
        )
        counts["fitted_now"] = sum(1 for b in done if b["status"] == "ok")
        counts["failed_now"] += sum(1 for b in done if b["status"] != "ok")
        rate = len(done) / max(time.perf_counter() - t0, 1e-9)
    columns, n_missing = assemble(out, catalogue.stars)
    paths = write_catalogue(out, columns, settings)
    from .assemble import columns_to_table

    table = columns_to_table(columns, settings)
    counts["ok"] = sum(1 for s in columns["status"] if s == "ok")
    counts["failed"] = sum(1 for s in columns["status"] if s != "ok")
    counts["missing"] = n_missing
    flags = flag_counts(columns)
    echo(
        f"catalogue: {counts['ok']} of {counts['stars']} stars fitted, {counts['failed']} failed"
        + (f", {n_missing} without a result (run the same command again)" if n_missing else "")
        + f"; wrote {paths[0]}, {paths[1]}"
    )
    if flags:
        echo("flags: " + ", ".join(f"{k} {v}" for k, v in flags.items()))
    if counts["not_retried"]:
        echo(f"{counts['not_retried']} stars failed in an earlier run and were not tried again (--retry-failed)")
    return CatalogResult(
        table=table,
        paths=paths,
        out_dir=out,
        settings=settings,
        counts=counts,
        flag_counts=flags,
        dashboard=dashboard,
        seconds=time.perf_counter() - t_start,
        stars_per_second=rate,
    )


def _prior_texts(priors, allowed) -> list[str]:
    """The run's priors as texts ``label=...`` (each parsed: a typo or an unknown label fails here)."""
    from ..inference.priors import PriorError, parse_prior

    if priors is None:
        return []
    if isinstance(priors, str):
        priors = [priors]
    if isinstance(priors, Mapping):
        raise PriorError("fit_catalog takes priors as texts, e.g. priors=['logg=4.4+-0.1', 'teff=5000:6000']")
    texts = []
    for p in priors:
        req = parse_prior(p) if isinstance(p, str) else p
        if req.name not in allowed:
            raise PriorError(
                f"prior for unknown parameter {req.name!r}; this fit has parameters {', '.join(allowed)} (check the "
                "spelling)"
            )
        texts.append(
            p if isinstance(p, str) else f"{req.name}={req.a:g}{'+-' if req.kind == 'gaussian' else ':'}{req.b:g}"
        )
    return texts


def check_settings(out: Path, settings: dict, echo) -> None:
    """Refuse to continue a run in ``out`` that was made with other settings (stars would be mixed)."""
    path = out / SETTINGS_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("settings", {})
    except (OSError, ValueError) as exc:
        raise SettingsMismatch(
            f"{path} cannot be read ({exc}); it records the settings of the run in {out}: restore it, or start over "
            "in a new output folder"
        ) from None
    diff = [k for k in RESULT_SETTINGS if _norm(old.get(k, SETTINGS_BEFORE.get(k))) != _norm(settings.get(k))]
    if diff:
        lines = ", ".join(f"{k}: {old.get(k, SETTINGS_BEFORE.get(k))!r} before, {settings.get(k)!r} now" for k in diff)
        raise SettingsMismatch(
            f"the stars in {out} were fitted with other settings ({lines}); a catalogue mixes no settings: rerun "
            f"with the settings of {path}, or give another output folder (-o) for these settings"
        )
    if old.get("stellarinf_version") != settings.get("stellarinf_version"):
        echo(
            f"warning: the stars in {out} were fitted by stellarinf {old.get('stellarinf_version')}, this is "
            f"{settings.get('stellarinf_version')}; the catalogue's stellarinf_version column says which fitted each"
        )


def _norm(v):
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def write_settings(out: Path, settings: dict) -> None:
    from ..io.atomic import write_json_atomic

    path = out / SETTINGS_FILE
    if not path.exists():
        write_json_atomic(path, {"format": SETTINGS_FORMAT, "format_version": 1, "settings": settings})


def scan_results(out: Path, stars: Sequence[StarRequest]) -> dict:
    """``{"ok": ids, "failed": ids}``: the stars with a result file. A fitted star whose per-star request (its
    resolution or priors from the manifest) differs from the one it was fitted with is an error (the manifest
    changed under an existing run)."""
    ok, failed, changed = set(), set(), []
    stars_dir = out / "stars"
    if not stars_dir.is_dir():
        return {"ok": ok, "failed": failed}
    from ..io.atomic import remove_stale_temporaries

    for s in stars:
        done, bad = star_paths(out, s.id)
        remove_stale_temporaries(done)
        remove_stale_temporaries(bad)
        if done.exists():
            try:
                rec = read_json(done)
            except (OSError, ValueError):  # not written by us (ours are atomic): fit the star again
                continue
            req = rec.get("request", {})
            if _norm(req.get("priors", [])) != _norm(list(s.priors)) or _norm(req.get("resolution")) != _norm(
                s.resolution
            ):
                changed.append(s.id)
            ok.add(s.id)
        elif bad.exists():
            failed.add(s.id)
    if changed:
        raise ManifestError(
            f"{len(changed)} stars already fitted in {out} have other priors or resolution in the manifest now "
            f"(e.g. {', '.join(changed[:3])}); delete their files in {stars_dir} to fit them again with the new values, "
            "or give another output folder (-o)"
        )
    return {"ok": ok, "failed": failed}


def record_failure(out: Path, star: StarRequest, emulator_name: str, error_type: str, message: str) -> dict:
    from ..io.atomic import write_json_atomic
    from .worker import RESULT_FORMAT, RESULT_VERSION

    record = {
        "format": RESULT_FORMAT,
        "format_version": RESULT_VERSION,
        "id": star.id,
        "path": star.path,
        "request": star.request(),
        "status": "failed",
        "error": f"{error_type}: {message}",
        "error_type": error_type,
        "seconds": 0.0,
        "emulator": emulator_name,
        "stellarinf_version": _version(),
    }
    _, bad = star_paths(out, star.id)
    write_json_atomic(bad, record)
    return brief(record)


def run_chunks(chunks, out: Path, name, ref, fit_kwargs, *, workers, scheduler, progress, echo):
    """Fit ``chunks`` on the Dask cluster; ``(dashboard address or None, [brief per star])``."""
    from distributed import Client, as_completed
    from tqdm.auto import tqdm

    from .affinity import start_local_cluster

    cluster = None
    if scheduler is not None:
        echo(f"connecting to the Dask scheduler at {scheduler}")
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise StellarinfError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); check the address (tcp://HOST:PORT) or "
                "leave out --scheduler for a local cluster"
            ) from None
    else:
        cluster, client = start_local_cluster(workers, len(chunks), echo)
    done: list[dict] = []
    try:
        dashboard = _dashboard(client)
        echo(f"Dask dashboard: {dashboard}" if dashboard else "Dask dashboard: none (install bokeh to have one)")
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        # a model object goes to every worker once, as bytes (PickledModel: unpickled there after float64 is on)
        model_arg = ref if isinstance(ref, str) else client.scatter(PickledModel.of(ref), broadcast=True, hash=False)
        queue = iter(chunks)
        pending: dict = {}
        resubmitted: dict = {}
        finished = as_completed()
        token = uuid.uuid4().hex[:8]
        n_submitted = 0

        def current_model():
            # a killed worker can take the scattered model's last copy with it (a restarted worker never had it):
            # scatter it again rather than let every later chunk fail on data the cluster forgot
            nonlocal model_arg
            if not isinstance(model_arg, str) and model_arg.status != "finished":
                model_arg = client.scatter(PickledModel.of(ref), broadcast=True, hash=False)
            return model_arg

        def submit(chunk) -> None:
            nonlocal n_submitted
            n_submitted += 1
            fut = client.submit(
                fit_chunk,
                [dataclasses.asdict(s) for s in chunk],
                str(out),
                name,
                current_model(),
                fit_kwargs,
                pure=False,
                key=f"stellarinf-fit-chunk-{token}-{n_submitted}-{chunk[0].id}",
            )
            pending[fut] = chunk
            finished.add(fut)

        def submit_next() -> bool:
            chunk = next(queue, None)
            if chunk is None:
                return False
            submit(chunk)
            return True

        for _ in range(2 * n_workers + 1):  # a bounded number of chunks in flight: the rest wait in the queue
            if not submit_next():
                break
        n_stars = sum(len(c) for c in chunks)
        bar = tqdm(total=n_stars, unit="star", desc="fit-catalog", disable=not progress, file=sys.stderr, smoothing=0.1)
        n_failed = 0
        for fut in finished:
            chunk = pending.pop(fut)
            try:
                briefs = fut.result()
            except CancelledError:  # its input, the scattered model, was lost with a killed worker: run it again
                key = chunk[0].id
                resubmitted[key] = resubmitted.get(key, 0) + 1
                if resubmitted[key] <= MAX_RESUBMITS:
                    fut.release()
                    submit(chunk)
                    continue
                briefs = _chunk_failed(out, chunk, name, "CancelledError", "its model was lost with a worker, again")
            except Exception as exc:  # the chunk's task itself failed (e.g. its worker died again and again)
                briefs = _chunk_failed(out, chunk, name, type(exc).__name__, str(exc))
            fut.release()
            done.extend(briefs)
            n_failed += sum(1 for b in briefs if b["status"] != "ok")
            bar.update(len(briefs))
            bar.set_postfix(failed=n_failed, refresh=False)
            submit_next()
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return dashboard, done


def _chunk_failed(out: Path, chunk, name, kind: str, why: str) -> list[dict]:
    """Briefs for a chunk whose task failed: a star whose result was written before the failure keeps it, the
    others are recorded as failed with the reason."""
    briefs = []
    for s in chunk:
        ok_path, _ = star_paths(out, s.id)
        if ok_path.exists():
            briefs.append(brief(read_json(ok_path)))
        else:
            briefs.append(record_failure(out, s, name, kind, f"the worker fitting this star's chunk failed ({why})"))
    return briefs


def _dashboard(client) -> str | None:
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an older or unusual scheduler
        return None
    return client.dashboard_link if "dashboard" in services else None


def assemble(out: Path, stars: Sequence[StarRequest]):
    """``(columns, n without a result)`` of the catalogue from the result files, in input order."""
    return catalogue_table_columns(out, [s.id for s in stars])


def _version() -> str:
    from .. import __version__

    return __version__
