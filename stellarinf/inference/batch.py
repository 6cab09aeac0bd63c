"""Fit many spectra: MAP/Laplace vmapped across spectra (in chunks, with a progress bar), or MCMC chains
per spectrum; one results table with a row per spectrum.

Spectra on the same pixel grid with the same model give :class:`Problem` pytrees of identical
structure: their array leaves are stacked (leaves shared by all, e.g. emulator weights, are not copied)
and the multi-start optimiser runs under ``vmap`` over spectra, compiled once.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from astropy.table import Table
from jax.sharding import PartitionSpec as P

from ..errors import StellarinfError
from .density import Problem
from .lanes import stack_modules, vectorise_lanes
from .laplace import LaplaceResult, cap_to_prior_width, covariance_from_hessian
from .map import MAPResult, laplace_mode, optimise_starts, refine_map, screened_polish, start_points


def star_mesh(devices=None) -> jax.sharding.Mesh | None:
    """A one-axis mesh ``("stars",)`` over ``devices`` (default: every device of the default backend), or None
    for a single device. Batches of stars are split along it: each device fits its share of a chunk."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) < 2:
        return None
    return jax.sharding.Mesh(np.asarray(devices), ("stars",))


def split_across(mesh: jax.sharding.Mesh, *arrays):
    """``arrays`` (pytrees of arrays with one star per row) placed on ``mesh``'s devices, an equal share of the stars on
    each: how :func:`map_laplace_batch` hands a chunk to its program (inputs placed otherwise compile another)."""
    return jax.device_put(arrays, jax.sharding.NamedSharding(mesh, P("stars")))


@functools.lru_cache(maxsize=16)  # one compiled program per setting and mesh, reused by later calls
def _batched_mode(max_iter, tol, mesh=None):
    def one(problem, z0s):
        # the same coordinates (unfolded) and screened polish as find_map (one spectrum), so both reach the same optimum
        opt = problem.unfolded()
        zs, values, n_iter, conv = optimise_starts(opt, opt.z_from(problem, z0s), max_iter, tol, False)
        zs, values, steps, conv = screened_polish(opt, zs, jnp.where(jnp.isfinite(values), values, -jnp.inf), False)
        n_iter = n_iter + steps
        zmap = problem.z_from(opt, zs[jnp.argmax(values)])
        zl, _, hess = laplace_mode(problem, zmap)  # unconstrained mode for Laplace, from the MAP
        return zmap, values, n_iter, conv, zl, hess, problem.z_from(opt, zs)

    def run(shared, batched, z0s):
        shared_arrays, shared_static = eqx.partition(shared, eqx.is_array)

        def local(shared_arrays, batched, z0s):
            whole = eqx.combine(shared_arrays, shared_static)
            return jax.vmap(lambda b, z: one(eqx.combine(b, whole), z))(batched, z0s)

        if mesh is None:
            return local(shared_arrays, batched, z0s)
        # shard_map, not automatic partitioning of the vmapped program: each device then runs its own optimiser
        # while-loops, instead of every device stepping until the slowest star of the whole chunk is done
        stars = P("stars")
        sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), stars, stars), out_specs=stars, check_vma=False)
        return sharded(shared_arrays, batched, z0s)

    return eqx.filter_jit(run)


def map_laplace_batch(
    problems: Sequence[Problem],
    *,
    n_starts: int = 4,
    seed: int = 0,
    chunk_size: int = 16,
    max_iter: int = 0,
    tol: float = 1e-3,
    progress: bool = True,
    vectorize: bool | None = None,
    devices: Sequence[jax.Device] | None = None,
    starts: Sequence[np.ndarray] | None = None,
) -> list[LaplaceResult]:
    """MAP + Laplace for every problem; ``starts``: per problem, its (n_starts, n_free) unconstrained starts
    (default: :func:`.map.start_points`).

    ``vectorize`` (default: on GPU/TPU only): vmap across spectra in chunks of ``chunk_size`` (padded so
    every chunk reuses one compiled program). With several ``devices`` (default: all of the default
    backend's) each chunk is split across them, ``chunk_size`` rounded up to a multiple of their number:
    the user changes nothing to use every GPU of a machine. On CPU a loop is faster: the per-spectrum program is
    compiled once (problems are jit arguments) and a vmapped while-loop would run every lane for as
    many iterations as the slowest start of the chunk. Also, with the shipped Payne the vmapped program
    has wedged XLA's CPU runtime (JAX 0.10.2: 0 % CPU, waiting for its buffers, for 2 and 4 spectra; inline
    dispatch avoided it once but not reliably; cf. jax-ml/jax#25861), so keep the loop on CPU.
    """
    from tqdm.auto import tqdm

    problems = list(problems)
    if not problems:
        return []
    if vectorize is None:
        vectorize = vectorise_lanes()
    mesh = star_mesh(devices) if vectorize else None
    if mesh is not None:
        chunk_size = math.ceil(chunk_size / mesh.size) * mesh.size
    out: list[LaplaceResult] = []
    desc = "MAP/Laplace" if mesh is None else f"MAP/Laplace on {mesh.size} devices"
    bar = tqdm(total=len(problems), desc=desc, unit="spectrum", disable=not progress)
    first = problems[: min(chunk_size, len(problems))]
    stack = stack_modules(first) if vectorize else None
    width = min(chunk_size, len(problems))  # every chunk padded to this: one compiled program
    if mesh is not None:
        width = math.ceil(width / mesh.size) * mesh.size  # an equal share for every device
    fn = None
    for start in range(0, len(problems), chunk_size):
        chunk = problems[start : start + chunk_size]
        t0 = time.perf_counter()
        padded = chunk + [chunk[-1]] * (width - len(chunk))
        if stack is None:
            st = None
        elif start == 0 and len(padded) == len(first):  # the reference stack is this chunk's: not stacked twice
            st = stack
        else:
            st = stack_modules(padded, like=stack)
        if st is None:  # structures differ: one at a time
            given = None if starts is None else starts[start : start + len(chunk)]
            _, laps, _ = map_laplace_loop(
                chunk, n_starts=n_starts, seed=seed + start, max_iter=max_iter, tol=tol, starts=given, bar=bar
            )
            out += laps
            continue
        shared, batched = st
        if fn is None:
            fn = _batched_mode(max_iter, tol, mesh)
        given = None if starts is None else list(starts[start : start + len(chunk)])
        chosen = [None] * len(padded) if given is None else given + [given[-1]] * (width - len(chunk))
        z0s = jnp.asarray(
            np.stack(
                [
                    start_points(p, n_starts, seed + start + i) if z is None else z
                    for i, (p, z) in enumerate(zip(padded, chosen))
                ]
            )
        )
        if mesh is not None:
            batched, z0s = split_across(mesh, batched, z0s)
        zmap, values, n_iter, conv, zl, hess, final = jax.block_until_ready(fn(shared, batched, z0s))
        wall = (time.perf_counter() - t0) / len(chunk)
        for i, p in enumerate(chunk):
            vals = np.asarray(values[i])
            best = int(np.argmax(np.where(np.isfinite(vals), vals, -np.inf)))
            x = p.to_numpy_params(np.asarray(zmap[i]))
            m = MAPResult(
                names=p.names,
                params={n: float(v) for n, v in x.items()},
                z=np.asarray(zmap[i]),
                log_posterior=float(vals[best]),
                hessian=None,
                start_values=vals,
                converged=np.asarray(conv[i]),
                n_iterations=np.asarray(n_iter[i]),
                wall_time=wall,
                jacobian=False,
                final_z=np.asarray(final[i]),
            )
            cov, ok = covariance_from_hessian(np.asarray(hess[i]))
            metric = cap_to_prior_width(cov, p)
            out.append(LaplaceResult(p.names, np.asarray(zl[i]), cov, ok, m, wall, metric))
        bar.update(len(chunk))
    bar.close()
    return out


def refit_batch(
    problems: Sequence[Problem],
    previous: Sequence[LaplaceResult],
    *,
    chunk_size: int = 16,
    progress: bool = True,
    devices: Sequence[jax.Device] | None = None,
) -> list[LaplaceResult]:
    """Vectorized MAP + Laplace of ``problems`` that differ from those ``previous`` was found for in array values only
    (e.g. the emulator's error scaled to each star), from ``previous``'s final points rather than a new search: the
    batched program again with those points as its starts (no new compile when as many problems are redone as were
    fitted, the usual case: one model, every star scaled; fewer pad to another chunk width). The one-at-a-time path
    needs no second pass: :func:`map_laplace_loop` rescales between its MAP and its Laplace."""
    starts = [np.asarray(lap.map.final_z) for lap in previous]
    return map_laplace_batch(
        problems,
        n_starts=starts[0].shape[0] if starts else 1,
        chunk_size=chunk_size,
        progress=progress,
        vectorize=True,
        devices=devices,
        starts=starts,
    )


# rescale(problem, map_result) → (the problem to fit instead, or None to keep it; columns for the star's row)
Rescale = Callable[[Problem, MAPResult], "tuple[Problem | None, dict]"]


def map_laplace_loop(
    problems: Sequence[Problem],
    *,
    n_starts: int = 4,
    seed: int = 0,
    max_iter: int = 0,
    tol: float = 1e-3,
    starts: Sequence[np.ndarray] | None = None,
    rescale: Rescale | None = None,
    bar=None,
) -> tuple[list[Problem], list[LaplaceResult], list[dict]]:
    """MAP + Laplace one problem at a time (the CPU path: each program compiled once, problems are its arguments).
    With ``rescale``, as :func:`stellarinf.fit_spectrum` does: find_map, then the problem ``rescale`` returns (if any)
    polished from that MAP (:func:`.map.refine_map`), then one Laplace. Returns the problems fitted, their results and
    each star's row columns from ``rescale``; ``bar`` (a tqdm bar) advances a star at a time."""
    from .laplace import laplace
    from .map import find_map

    fitted, results, extras = [], [], []
    for i, p in enumerate(problems):
        given = None if starts is None else starts[i]
        m = find_map(p, n_starts=n_starts, seed=seed + i, max_iter=max_iter, tol=tol, starts=given)
        new, columns = (None, {}) if rescale is None else rescale(p, m)
        if new is not None:
            p, m = new, refine_map(new, m)
        fitted.append(p)
        results.append(laplace(p, m))
        extras.append(dict(columns))
        if bar is not None:
            bar.update(1)
    return fitted, results, extras


def rescale_batch(problems, inits, rescale: Rescale, **refit_options):
    """The vectorized path's second pass for the problems ``rescale`` changes after their first MAP
    (:func:`refit_batch`): returns the problems fitted from here on, their MAP + Laplace results, and each star's row
    columns from ``rescale``."""
    problems, inits = list(problems), list(inits)
    extras, changed = [], []
    for i, (p, lap) in enumerate(zip(problems, inits)):
        new, columns = (None, {}) if lap is None else rescale(p, lap.map)
        extras.append(dict(columns))
        if new is not None:
            problems[i] = new
            changed.append(i)
    if changed:
        redone = refit_batch([problems[i] for i in changed], [inits[i] for i in changed], **refit_options)
        for i, lap in zip(changed, redone):
            inits[i] = lap
    return problems, inits, extras


def _row_from_table(spectrum_id: str, table: Table) -> dict:
    row = {"spectrum": spectrum_id}
    for r in table:
        n = r["name"]
        row[n] = float(r["p50"])
        row[f"{n}_err"] = float(r["sd"])
        row[f"{n}_p16"] = float(r["p16"])
        row[f"{n}_p84"] = float(r["p84"])
    row["r_hat_max"] = float(np.nanmax(table["r_hat"])) if np.any(np.isfinite(table["r_hat"])) else math.nan
    row["ess_bulk_min"] = float(np.min(table["ess_bulk"]))
    row["chi2_reduced"] = float(table.meta.get("CHI2RED", math.nan))
    row["n_divergent"] = int(table.meta.get("NDIVERG", 0))
    flags = [f"{r['name']}:{r['flags']}" for r in table if r["flags"]]
    if table.meta.get("FLAGS"):
        flags.insert(0, table.meta["FLAGS"])
    row["flags"] = ";".join(flags)
    return row


def fit_batch(
    problems: Sequence[Problem],
    ids: Sequence[str] | None = None,
    *,
    method: str = "laplace",
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    n_starts: int = 4,
    seed: int = 0,
    chunk_size: int = 16,
    progress: bool = True,
    keep_idata: bool = False,
    vectorize: bool | None = None,
    rescale: Rescale | None = None,
    max_seconds: float | None = None,
):
    """Fit every problem; returns ``(table, idatas)`` — one row per spectrum (medians, sd, 16/84
    percentiles, max R-hat, min ESS, reduced χ², divergences, flags, the ``sampler`` that made it); ``idatas`` if
    ``keep_idata``.

    ``max_seconds``: each star's wall-clock budget for a sampler that takes one (NUTS): a star whose run projects past
    it is drawn by ``laplace-is`` from the same Laplace start instead, its row's ``sampler`` says so and
    ``sampler_fallback`` why (as :func:`stellarinf.fit_spectrum` falls back, and a catalogue's columns say).

    ``rescale`` (optional): after the first MAP, ``rescale(problem, map_result)`` may return another problem to fit
    instead (same structure, other array values: the emulator's error scaled to the star) and columns for the star's
    row. One at a time (CPU) each star is rescaled between its MAP and its Laplace (:func:`map_laplace_loop`);
    vectorized, those stars' MAP and Laplace are redone from their first search's final points (:func:`rescale_batch`)."""
    from tqdm.auto import tqdm

    from .results import summary_table, to_inference_data
    from .samplers import SamplerBudgetExceeded, sample, sampler_spec

    problems = list(problems)
    ids = [f"spectrum_{i}" for i in range(len(problems))] if ids is None else [str(i) for i in ids]
    spec = sampler_spec(method)  # an unknown name fails before any work
    if vectorize is None:
        vectorize = vectorise_lanes()
    extras: list[dict] = [{} for _ in problems]
    if rescale is not None and not vectorize:  # rescaled between each star's MAP and its one Laplace
        with tqdm(total=len(problems), desc="MAP/Laplace", unit="spectrum", disable=not progress) as bar:
            problems, inits, extras = map_laplace_loop(problems, n_starts=n_starts, seed=seed, rescale=rescale, bar=bar)
    else:
        inits = map_laplace_batch(
            problems, n_starts=n_starts, seed=seed, chunk_size=chunk_size, progress=progress, vectorize=vectorize
        )
        if rescale is not None:
            problems, inits, extras = rescale_batch(problems, inits, rescale, chunk_size=chunk_size, progress=progress)
    rows, idatas = [], []
    bar = tqdm(
        total=len(problems),
        desc=f"posteriors ({method})",
        unit="spectrum",
        disable=not progress or not (spec.is_mcmc or spec.name == "laplace-is"),
    )
    for i, (p, lap) in enumerate(zip(problems, inits)):
        try:
            if lap is None:
                raise StellarinfError("the MAP/Laplace step failed for this spectrum")
            used, fallback = method, ""
            try:
                post = sample(
                    p,
                    method,
                    chains=chains,
                    warmup=warmup,
                    draws=draws,
                    seed=seed + i,
                    init=lap,
                    max_seconds=max_seconds,
                )
            except SamplerBudgetExceeded as exc:  # this star only: the others keep the chosen sampler
                used, fallback = "laplace-is", str(exc)
                post = sample(p, used, chains=chains, draws=draws, seed=seed + i, init=lap)
            idata = to_inference_data(post, p, n_predictive=20 if not keep_idata else 100)
            row = _row_from_table(ids[i], summary_table(idata))
            rows.append(
                {**row, **extras[i], "sampler": used, "sampler_fallback": fallback, "status": "ok", "error": ""}
            )
        except (
            StellarinfError,
            FloatingPointError,
            np.linalg.LinAlgError,
        ) as exc:  # one spectrum's failure is its row's
            idata = None
            rows.append({"spectrum": ids[i], "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if keep_idata:
            idatas.append(idata)
        bar.update(1)
    bar.close()
    table = rows_to_table(rows, first=("spectrum", "status", "error"))
    table.meta["METHOD"] = method
    return table, idatas


def rows_to_table(rows: Sequence[dict], first: Sequence[str] = ()) -> Table:
    """A table from dict rows with different keys (a failed spectrum has no medians): missing numbers are
    NaN, missing texts empty. Columns in first-seen order, ``first`` leading."""
    names = list(first)
    for r in rows:
        names += [k for k in r if k not in names]
    kinds = {}
    for n in names:
        vals = [r[n] for r in rows if n in r]
        kinds[n] = (
            "str"
            if any(isinstance(v, str) for v in vals)
            else "int"
            if vals and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals)
            else "float"
        )
    cols = {}
    for n in names:
        if kinds[n] == "str":
            cols[n] = [str(r.get(n, "")) for r in rows]
        elif kinds[n] == "int" and all(n in r for r in rows):
            cols[n] = [int(r[n]) for r in rows]
        else:
            cols[n] = [float(r.get(n, math.nan)) for r in rows]
    return Table(cols, names=names)
