"""Joint posteriors of many stars that share nuisance parameters (one resolving power per plate, ...).

The physics stays in :class:`~stellarinf.observe.model.ObservationModel`: each star has its own, built eagerly
from its spectrum (with ``fit_resolution=True`` when the resolving power is shared, so ``resolution`` is one
of its parameters). :class:`JointProblem` binds them:

- **per-star parameters** (labels, ``rv``, ``vsini``, ``vmacro``, ...): one value per star, arrays ``(n_stars,)``;
- **shared parameters** (``share=("resolution",)``): one value per *group* of stars, arrays ``(n_groups,)``;
  ``group_index[name][i]`` is the group of star ``i`` (all stars in one group by default; e.g. one group per
  fibre plate or night);
- the joint log-likelihood is the sum of the stars' own log-likelihoods, each evaluated at its per-star
  parameters and its group's shared values (:meth:`JointProblem.star_log_likelihoods`).

Stars whose observation models have identical static settings and array shapes (the survey case: one pixel
grid, one emulator, one set of options) are *stacked*: their array leaves gain a leading star axis and the
log-likelihood is mapped over stars in one compiled program, chosen by ``star_map``: ``"vmap"`` (the default on
accelerators), ``"map"`` (``jax.lax.map``, the default on a CPU) or ``"unroll"`` (a Python loop over the stacked
stars: one larger program). Measured on a CPU core, 20 stars of the joint-fit benchmark (2,120 pixels, the shipped
Payne, 28 error modes), one value + gradient: ``"map"`` 81 ms of CPU time (compiled in 10–14 s), ``"unroll"``
67 ms (compiled in 40–65 s), ``"vmap"`` about 6× slower than ``"map"`` (1.0 s against 0.17 s wall clock, at load
~2): a vmapped observation model turns the per-star broadening kernels into grouped convolutions and the small
dense solves into batched ones, which XLA's CPU backend runs badly. Models that cannot be stacked (different pixel
grids) are summed one by one (a compiled program that grows with the number of stars; right, only slower to
compile).

:func:`make_joint_numpyro_model` is the NumPyro model: ``numpyro.plate("star", n_stars)`` around the per-star
sites, one plate per shared parameter over its groups, the likelihood as a factor. Priors and their boxes are
those of the single-star fit (:mod:`.priors`); the same bounded bijections make NumPyro's unconstrained space the
one :meth:`JointProblem.log_density` works in, so the Laplace approximation of :func:`joint_laplace` is NUTS's
dense metric and the chains' starting spread.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import StellarinfError
from . import transforms
from .lanes import stack_modules, vectorise_lanes
from .laplace import LOGISTIC_VARIANCE, covariance_from_hessian
from .priors import Prior, PriorArrays, resolve_priors

__all__ = [
    "SHAREABLE",
    "JointProblem",
    "JointLaplace",
    "JointPosterior",
    "make_joint_numpyro_model",
    "joint_laplace",
    "run_joint_nuts",
]

# nuisances that may be shared across stars (labels are always per star)
SHAREABLE = ("resolution", "rv", "vsini", "vmacro", "ln_jitter")
# how stacked stars are evaluated (JointProblem.build's star_map)
STAR_MAPS = ("map", "vmap", "unroll")


class JointError(StellarinfError, ValueError):
    """A joint fit cannot be set up as asked (shared names, groups, stars)."""


class JointProblem(eqx.Module):
    """Observation models of ``n_stars`` stars + priors + which parameters are shared by which groups.

    The unconstrained vector ``z`` (what MAP, Laplace and the samplers move) is laid out as the per-star block
    ``(n_stars, n_star_params)`` flattened star by star, then each shared parameter's groups in turn
    (:meth:`index` gives every site's positions)."""

    stacked_shared: Any  # the unstacked part of the stacked models (None when not stacked)
    stacked: Any  # stacked array leaves (None when not stacked)
    models: tuple  # the models one by one (used when not stacked, and for eager helpers)
    star_names: tuple[str, ...] = eqx.field(static=True)
    shared_names: tuple[str, ...] = eqx.field(static=True)
    n_groups: tuple[int, ...] = eqx.field(static=True)
    group_keys: tuple[tuple[str, ...], ...] = eqx.field(static=True)
    star_priors: tuple[Prior, ...] = eqx.field(static=True)
    shared_priors: tuple[Prior, ...] = eqx.field(static=True)
    n_stars: int = eqx.field(static=True)
    star_map: str = eqx.field(static=True)  # "map", "vmap" or "unroll": how stacked stars are evaluated
    group_index: tuple  # per shared name: (n_stars,) int array of group numbers

    # ---- construction (eager, validating) -------------------------------------------------------
    @classmethod
    def build(
        cls,
        models: Sequence[Any],
        share: Sequence[str] = ("resolution",),
        groups: Sequence | Mapping[str, Sequence] | None = None,
        priors=None,
        *,
        star_map: str | None = None,
        vectorise: bool | None = None,
    ) -> "JointProblem":
        """``models``: one :class:`~stellarinf.observe.model.ObservationModel` per star, all with the same
        parameters (same label space and settings); ``share``: parameter names with one value per group;
        ``groups``: None (one group: all stars), a per-star sequence of group keys (used for every shared
        parameter), or a mapping shared name → per-star keys; ``priors``: overrides as for a single star
        (texts ``"logg=4.4+-0.1"`` or a mapping), applied to every star (and to a shared parameter's groups);
        ``star_map``: how stacked stars are evaluated, ``"map"``, ``"vmap"`` or ``"unroll"`` (module docstring;
        default ``"vmap"`` on accelerators, ``"map"`` on a CPU); ``vectorise=True``/``False`` is the older
        spelling of ``"vmap"``/``"map"``."""
        models = list(models)
        n = len(models)
        if n < 2:
            raise JointError(
                f"a joint fit needs at least 2 stars, got {n}; fit a single star with stellarinf.fit_spectrum"
            )
        names0 = tuple(models[0].param_names)
        labels0 = tuple(models[0].label_names)
        for i, m in enumerate(models[1:], start=1):
            if tuple(m.label_names) != labels0:
                raise JointError(
                    f"star {i} is fitted with labels ({', '.join(m.label_names)}) but star 0 with "
                    f"({', '.join(labels0)}); a joint fit needs one label space: fit all stars with the same emulator"
                )
            if tuple(m.param_names) != names0:
                raise JointError(
                    f"star {i} has parameters ({', '.join(m.param_names)}) but star 0 ({', '.join(names0)}); "
                    "build every star's observation model with the same options (fixed values, fit_resolution, "
                    "continuum mode)"
                )
        share = tuple(dict.fromkeys(str(s).strip().lower() for s in share))
        valid = [s for s in SHAREABLE if s in names0]
        unknown = [s for s in share if s not in valid]
        if unknown:
            hint = ""
            if "resolution" in unknown:
                hint = " (resolution is a parameter only with fit_resolution=True)"
            if "ln_jitter" in unknown:
                hint += " (ln_jitter only with jitter=True)"
            raise JointError(
                f"cannot share {', '.join(map(repr, unknown))}: not a nuisance parameter of these fits{hint}; "
                f"the parameters that can be shared are {', '.join(valid) or 'none'} (labels are per star)"
            )
        if not share:
            raise JointError(f"nothing to share: name at least one of {', '.join(valid)} (e.g. share=('resolution',))")
        group_keys, group_index = [], []
        for s in share:
            keys = groups.get(s) if isinstance(groups, Mapping) else groups
            if keys is None:
                keys = ["all"] * n
            keys = [str(k) for k in keys]
            if len(keys) != n:
                raise JointError(f"groups for {s!r}: {len(keys)} keys for {n} stars; give one key per star")
            uniq = tuple(dict.fromkeys(keys))
            group_keys.append(uniq)
            group_index.append(jnp.asarray(np.array([uniq.index(k) for k in keys], dtype=np.int32)))
        if isinstance(groups, Mapping):
            extra = [k for k in groups if k not in share]
            if extra:
                raise JointError(f"groups given for {extra}, which are not shared; share them or drop their groups")
        star_names = tuple(p for p in names0 if p not in share)
        bounds = {k: (float(lo), float(hi)) for k, (lo, hi) in models[0].default_bounds().items()}
        specs = resolve_priors(bounds, priors)
        if star_map is None:
            star_map = ("vmap" if vectorise else "map") if vectorise is not None else None
        if star_map is None:
            star_map = "vmap" if vectorise_lanes() else "map"
        if star_map not in STAR_MAPS:
            raise JointError(f"star_map must be one of {', '.join(map(repr, STAR_MAPS))}, got {star_map!r}")
        st = stack_modules(models)
        return cls(
            stacked_shared=None if st is None else st[0],
            stacked=None if st is None else st[1],
            models=tuple(models),
            star_names=star_names,
            shared_names=share,
            n_groups=tuple(len(k) for k in group_keys),
            group_keys=tuple(group_keys),
            star_priors=tuple(specs[p] for p in star_names),
            shared_priors=tuple(specs[p] for p in share),
            n_stars=n,
            star_map=str(star_map),
            group_index=tuple(group_index),
        )

    # ---- layout ---------------------------------------------------------------------------------
    @property
    def is_stacked(self) -> bool:
        return self.stacked is not None

    @property
    def n_star_params(self) -> int:
        return len(self.star_names)

    @property
    def n_free(self) -> int:
        return self.n_stars * self.n_star_params + sum(self.n_groups)

    @property
    def site_names(self) -> tuple[str, ...]:
        return self.star_names + self.shared_names

    def index(self) -> dict[str, np.ndarray]:
        """Site name → positions of its elements in ``z`` (per-star sites: (n_stars,), shared: (n_groups,))."""
        k = self.n_star_params
        out = {name: np.arange(self.n_stars) * k + j for j, name in enumerate(self.star_names)}
        off = self.n_stars * k
        for name, g in zip(self.shared_names, self.n_groups):
            out[name] = off + np.arange(g)
            off += g
        return out

    @property
    def star_prior(self) -> PriorArrays:
        return _prior_arrays(self.star_priors)

    @property
    def shared_prior(self) -> PriorArrays:
        return _prior_arrays(self.shared_priors)

    def split(self, z: Float[Array, "n"]) -> tuple[Float[Array, "s k"], tuple]:
        """``z`` → (per-star block (n_stars, k), per shared name its (n_groups,) slice), unconstrained."""
        k, n = self.n_star_params, self.n_stars
        zs = z[: n * k].reshape(n, k)
        out, off = [], n * k
        for g in self.n_groups:
            out.append(z[off : off + g])
            off += g
        return zs, tuple(out)

    def constrain(self, z: Float[Array, "n"]) -> tuple[dict, dict]:
        """``z`` → ``(per_star, shared)``: dicts of physical values, (n_stars,) and (n_groups,) arrays."""
        zs, zsh = self.split(z)
        sp = self.star_prior
        x = transforms.to_constrained(zs, sp.lower, sp.upper, sp.fold)
        per = {name: x[:, j] for j, name in enumerate(self.star_names)}
        shared = {}
        for j, name in enumerate(self.shared_names):
            one = _prior_arrays(self.shared_priors[j : j + 1])
            shared[name] = transforms.to_constrained(zsh[j][:, None], one.lower, one.upper, one.fold)[:, 0]
        return per, shared

    def star_params(self, per: Mapping, shared: Mapping) -> dict[str, Float[Array, "s"]]:
        """Every star's full parameter dict as (n_stars,) arrays: its own values and its groups' shared ones."""
        out = {name: jnp.asarray(per[name]) for name in self.star_names}
        for name, gi in zip(self.shared_names, self.group_index):
            out[name] = jnp.asarray(shared[name])[gi]
        return out

    # ---- pure JAX -------------------------------------------------------------------------------
    def star_log_likelihoods(self, per: Mapping, shared: Mapping) -> Float[Array, "s"]:
        """(n_stars,) log-likelihood of each star's spectrum at its parameters (physical units)."""
        params = self.star_params(per, shared)
        if not self.is_stacked:
            return jnp.stack(
                [m.log_likelihood({k: v[i] for k, v in params.items()}) for i, m in enumerate(self.models)]
            )
        base = self.stacked_shared

        def one(b, p):
            return eqx.combine(b, base).log_likelihood(p)

        if self.star_map == "vmap":
            return jax.vmap(one)(self.stacked, params)
        if self.star_map == "unroll":
            return jnp.stack(
                [
                    one(jax.tree.map(lambda a: a[i], self.stacked), {k: v[i] for k, v in params.items()})
                    for i in range(self.n_stars)
                ]
            )
        return jax.lax.map(lambda a: one(*a), (self.stacked, params))

    def log_likelihood(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        return jnp.sum(self.star_log_likelihoods(*self.constrain(z)))

    def log_prior_and_jacobian(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        """Log prior of the constrained values plus ``log |dx/dz|``, every star and group."""
        zs, zsh = self.split(z)
        sp = self.star_prior
        x = transforms.to_constrained(zs, sp.lower, sp.upper, sp.fold)
        total = jnp.sum(jax.vmap(sp.log_prob)(x)) + jnp.sum(transforms.log_abs_det_jacobian(zs, sp.lower, sp.upper))
        for j in range(len(self.shared_names)):
            one = _prior_arrays(self.shared_priors[j : j + 1])
            zz = zsh[j][:, None]
            xx = transforms.to_constrained(zz, one.lower, one.upper, one.fold)
            total = total + jnp.sum(jax.vmap(one.log_prob)(xx))
            total = total + jnp.sum(transforms.log_abs_det_jacobian(zz, one.lower, one.upper))
        return total

    def log_density(self, z: Float[Array, "n"]) -> Float[Array, ""]:
        """Joint log posterior density of ``z`` (unconstrained, Jacobian included)."""
        lp = self.log_prior_and_jacobian(z) + self.log_likelihood(z)
        return jnp.where(jnp.isnan(lp), -jnp.inf, lp)

    def single_problem(self, model):
        """Star ``model`` as a one-star :class:`~stellarinf.inference.density.Problem` over its own parameters
        then its shared values (the order of :meth:`block_curvature`'s blocks), priors included once each."""
        from .density import Problem

        return Problem(model, self.star_names + self.shared_names, self.star_priors + self.shared_priors, {})

    def _shared_term(self, zs: Float[Array, "m"]) -> Float[Array, ""]:
        """Log prior + log |dx/dz| of one value of each shared parameter (unconstrained ``zs``, (m,))."""
        pa = self.shared_prior
        x = transforms.to_constrained(zs, pa.lower, pa.upper, pa.fold)
        return pa.log_prob(x) + jnp.sum(transforms.log_abs_det_jacobian(zs, pa.lower, pa.upper))

    def block_curvature(self, z: Float[Array, "n"]):
        """Gradient and curvature of :meth:`log_density` in per-star blocks.

        Star ``i`` depends on its own ``k`` parameters and on one value of each shared parameter, so the joint
        Hessian is block-diagonal over stars plus the shared rows and columns (an arrowhead): each star's
        ``(k + m)²`` block is its one-star problem's curvature (:func:`~stellarinf.inference.map.hessian_core`:
        Gauss–Newton for the likelihood, finite differences for the rest: second-order autodiff through the
        broadening kernels is NaN in ``vsini``), mapped over stars, with the shared values' prior taken out
        (it is counted once, in the returned shared-prior gradient and Hessian). Returns ``(per-star gradients
        (s, k+m), per-star curvatures (s, k+m, k+m), shared-prior gradient (G,), its Hessian (G, G))``;
        :meth:`assemble` scatters them into place."""
        from .map import hessian_core

        zs, zsh = self.split(z)
        k = self.n_star_params
        zsh_star = jnp.stack([zsh[j][gi] for j, gi in enumerate(self.group_index)], axis=1)  # (s, m)
        v = jnp.concatenate([zs, zsh_star], axis=1)

        def star_block(vi, model):
            single = self.single_problem(model)
            g = jax.grad(single.log_density)(vi)
            h = hessian_core(single, vi, True)
            gp = jax.grad(self._shared_term)(vi[k:])
            hp = jax.hessian(self._shared_term)(vi[k:])
            return g.at[k:].add(-gp), h.at[k:, k:].add(-hp)

        if self.is_stacked:
            base = self.stacked_shared
            if self.star_map == "vmap":  # "unroll" too maps here: the curvature's program is large already
                g, h = jax.vmap(lambda a, b: star_block(a, eqx.combine(b, base)))(v, self.stacked)
            else:
                g, h = jax.lax.map(lambda a: star_block(a[0], eqx.combine(a[1], base)), (v, self.stacked))
        else:
            outs = [star_block(v[i], m) for i, m in enumerate(self.models)]
            g = jnp.stack([o[0] for o in outs])
            h = jnp.stack([o[1] for o in outs])

        def shared_prior_term(u):
            zshared = self.split(jnp.concatenate([jnp.zeros(self.n_stars * k), u]))[1]
            total = 0.0
            for j in range(len(self.shared_names)):
                one = _prior_arrays(self.shared_priors[j : j + 1])
                zz = zshared[j][:, None]
                xx = transforms.to_constrained(zz, one.lower, one.upper, one.fold)
                total = total + jnp.sum(jax.vmap(one.log_prob)(xx))
                total = total + jnp.sum(transforms.log_abs_det_jacobian(zz, one.lower, one.upper))
            return total

        u = z[self.n_stars * k :]
        return g, h, jax.grad(shared_prior_term)(u), jax.hessian(shared_prior_term)(u)

    # ---- eager helpers --------------------------------------------------------------------------
    def assemble(self, g, h, gs, hs) -> tuple[np.ndarray, np.ndarray]:
        """Full gradient (n_free,) and Hessian (n_free, n_free) from :meth:`block_curvature`'s blocks."""
        g, h, gs, hs = (np.asarray(a, dtype=np.float64) for a in (g, h, gs, hs))
        k, n = self.n_star_params, self.n_stars
        grad = np.zeros(self.n_free)
        hess = np.zeros((self.n_free, self.n_free))
        off = n * k
        grad[off:] += gs
        hess[off:, off:] += hs
        for i in range(n):
            pos = self.star_block(i)
            np.add.at(grad, pos, g[i])
            np.add.at(hess, np.ix_(pos, pos), h[i])
        return grad, hess

    def star_block(self, i: int) -> np.ndarray:
        """Positions in ``z`` of star ``i``'s one-star problem (:meth:`single_problem`, :meth:`block_curvature`'s
        blocks): its own parameters, then its groups' value of each shared one."""
        k = self.n_star_params
        starts = self.n_stars * k + np.cumsum((0,) + tuple(self.n_groups[:-1]))  # each shared site's first (index())
        shared = [int(starts[j]) + int(np.asarray(gi)[i]) for j, gi in enumerate(self.group_index)]
        return np.concatenate([np.arange(i * k, (i + 1) * k), np.asarray(shared, dtype=int)])

    def to_numpy(self, z) -> dict[str, np.ndarray]:
        """Physical values of every site for ``z`` of any leading batch shape: (..., n_stars) / (..., n_groups)."""
        z = np.asarray(z)
        flat = z.reshape(-1, z.shape[-1])
        per, shared = jax.vmap(self.constrain)(jnp.asarray(flat))
        out = {}
        for name, v in {**per, **shared}.items():
            v = np.asarray(v)
            out[name] = v.reshape(*z.shape[:-1], v.shape[-1])
        return out

    def from_params(self, per: Mapping, shared: Mapping) -> np.ndarray:
        """Unconstrained ``z`` from physical per-star values (name → (n_stars,)) and shared values (name →
        (n_groups,)); values are moved just inside their boxes first."""
        z = np.zeros(self.n_free)
        idx = self.index()
        for j, name in enumerate(self.star_names):
            p = self.star_priors[j]
            x = transforms.clip_to_interior(np.asarray(per[name], float), p.lower, p.upper, margin=1e-4)
            z[idx[name]] = np.asarray(transforms.to_unconstrained(x, p.lower, p.upper, p.fold))
        for j, name in enumerate(self.shared_names):
            p = self.shared_priors[j]
            x = transforms.clip_to_interior(np.asarray(shared[name], float), p.lower, p.upper, margin=1e-4)
            z[idx[name]] = np.asarray(transforms.to_unconstrained(x, p.lower, p.upper, p.fold))
        return z

    def metric_cap(self) -> np.ndarray:
        """Per-coordinate cap on the samplers' metric variance: a uniform prior's logistic variance in z."""
        cap = np.full(self.n_free, np.inf)
        idx = self.index()
        for name, p in zip(self.site_names, self.star_priors + self.shared_priors):
            if np.isfinite(p.upper - p.lower):
                cap[idx[name]] = LOGISTIC_VARIANCE
        return cap


def _prior_arrays(specs: tuple[Prior, ...]) -> PriorArrays:
    from .density import _prior_arrays as cached

    return cached(specs)


# ---------------------------------------------------------------------------------------------
# NumPyro model
# ---------------------------------------------------------------------------------------------
def make_joint_numpyro_model(problem: JointProblem):
    """A NumPyro model ``model()``: a ``numpyro.plate("star", n_stars)`` over the per-star sites, a plate over
    the groups of each shared site (``"<name>_group"``), and the joint log-likelihood as one factor. No
    physics here: the likelihood is :meth:`JointProblem.star_log_likelihoods`."""
    import numpyro

    from .numpyro_model import prior_distribution

    star_d = {name: prior_distribution(p) for name, p in zip(problem.star_names, problem.star_priors)}
    shared_d = {name: prior_distribution(p) for name, p in zip(problem.shared_names, problem.shared_priors)}

    def model():
        with numpyro.plate("star", problem.n_stars):
            per = {name: numpyro.sample(name, d) for name, d in star_d.items()}
        shared = {}
        for (name, d), g in zip(shared_d.items(), problem.n_groups):
            with numpyro.plate(f"{name}_group", g):
                shared[name] = numpyro.sample(name, d)
        numpyro.factor("log_likelihood", jnp.sum(problem.star_log_likelihoods(per, shared)))

    return model


# ---------------------------------------------------------------------------------------------
# MAP + Laplace on the joint posterior
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class JointLaplace:
    """The joint mode and the Laplace approximation around it (unconstrained space, layout of ``problem.index()``)."""

    mean_z: np.ndarray
    cov_z: np.ndarray
    metric_z: np.ndarray  # cov_z with flat directions capped at the prior's logistic variance
    hessian_ok: bool
    log_density: float
    n_newton: int
    converged: bool
    wall_time: float

    def sample_z(self, key, n: int, *, metric: bool = True) -> np.ndarray:
        chol = np.linalg.cholesky(self.metric_z if metric else self.cov_z)
        eps = np.asarray(jax.random.normal(key, (n, len(self.mean_z)), dtype=jnp.float64))
        return self.mean_z + eps @ chol.T


@eqx.filter_jit
def _curvature(problem: JointProblem, z):
    return problem.block_curvature(z)


@eqx.filter_jit
def _log_density(problem: JointProblem, z):
    return problem.log_density(z)


def joint_laplace(problem: JointProblem, z0: np.ndarray, *, max_steps: int = 30, tol: float = 1e-3) -> JointLaplace:
    """Damped Newton steps from ``z0`` to the joint mode (exact per-star block Hessians, :meth:`block_curvature`),
    then ``cov = (−H)⁻¹`` there. Start from the stars' own MAPs: each star's block is then near its optimum and
    the steps mostly move the shared values and what correlates with them."""
    t0 = time.perf_counter()
    z = np.asarray(z0, dtype=np.float64).copy()
    f = float(_log_density(problem, jnp.asarray(z)))
    if not np.isfinite(f):
        raise JointError("the joint log density is not finite at the starting point; check the spectra and priors")
    converged, n, lam = False, 0, 1e-6
    for n in range(1, max_steps + 1):
        grad, hess = problem.assemble(*_curvature(problem, jnp.asarray(z)))
        # "saddle-free" Newton: eigenvalues of the precision taken in absolute value, plus Levenberg damping, so
        # a start where the posterior is not yet concave (a shared value the stars alone hardly constrain) still
        # moves uphill
        w, v = np.linalg.eigh(-0.5 * (hess + hess.T))
        gv = v.T @ grad
        scale = max(float(np.max(np.abs(w))), 1e-12)
        if np.all(w > 0) and float(gv @ (gv / w)) < tol:  # Newton decrement: within tol of the mode
            converged = True
            break
        accepted = False
        while lam < 1e12:
            step = v @ (gv / (np.abs(w) + lam * scale))
            step = step * min(1.0, 3.0 / max(float(np.max(np.abs(step))), 1e-300))  # at most 3 in z at once
            f_new = float(_log_density(problem, jnp.asarray(z + step)))
            if np.isfinite(f_new) and f_new >= f - 1e-9:
                z, f = z + step, f_new
                lam = max(lam / 10, 1e-9)
                accepted = True
                break
            lam *= 10
        if not accepted:  # no step gains: a mode (to numerical precision)
            converged = True
            break
    grad, hess = problem.assemble(*_curvature(problem, jnp.asarray(z)))
    cov, ok = covariance_from_hessian(hess)
    cap = problem.metric_cap()
    var = np.diag(cov)
    scale = np.where(var > cap, np.sqrt(cap / np.maximum(var, 1e-300)), 1.0)
    metric = cov * scale[:, None] * scale[None, :]
    return JointLaplace(z, cov, metric, ok, f, n, converged, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# NUTS
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class JointPosterior:
    """Draws of every site: per-star (chains, draws, n_stars), shared (chains, draws, n_groups); stats
    (chains, draws)."""

    method: str
    samples: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    timings: dict[str, float]
    n_gradient_evals: int
    tuning: dict = dataclasses.field(default_factory=dict)  # e.g. ``ring``: star index → what :mod:`.ring` found

    @property
    def n_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def n_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    @property
    def n_divergent(self) -> int:
        d = self.stats.get("diverging")
        return 0 if d is None else int(np.sum(d))


def _draws_z(problem: JointProblem, samples: Mapping[str, Any]) -> np.ndarray:
    """Constrained draws (site → (chains, draws, n)) → unconstrained ``z`` (chains, draws, n_free)."""
    idx = problem.index()
    first = np.asarray(next(iter(samples.values())))
    z = np.zeros(first.shape[:2] + (problem.n_free,))
    for name, p in zip(problem.site_names, problem.star_priors + problem.shared_priors):
        x = np.asarray(samples[name], dtype=np.float64)
        x = transforms.clip_to_interior(x, p.lower, p.upper, margin=1e-12)
        z[..., idx[name]] = np.asarray(transforms.to_unconstrained(jnp.asarray(x), p.lower, p.upper, p.fold))
    return z


def rescaled_metric(metric: np.ndarray, z_draws: np.ndarray, *, floor: float = 0.25, ceiling: float = 16.0) -> tuple:
    """The Laplace metric with each coordinate's variance replaced by the pooled variance of ``z_draws``
    (chains, draws, n) and its correlations kept: ``D M D`` with ``D = diag(sd_draws / sd_metric)``, the ratio
    clipped to [√floor, √ceiling]. Returns ``(metric, variance ratio)``: where the Laplace approximation is
    too narrow (a v sin i below the resolution, whose posterior runs into the box edge with an exponential
    tail in z), NUTS otherwise needs many short steps to cross that direction and mixes slowly there."""
    flat = np.asarray(z_draws).reshape(-1, z_draws.shape[-1])
    ratio = np.var(flat, axis=0, ddof=1) / np.diag(metric)
    ratio = np.clip(ratio, floor, ceiling)
    d = np.sqrt(ratio)
    return metric * d[:, None] * d[None, :], ratio


def run_joint_nuts(
    problem: JointProblem,
    lap: JointLaplace,
    *,
    chains: int = 4,
    warmup: int = 300,
    draws: int = 500,
    seed: int = 0,
    target_accept: float = 0.8,
    adapt_mass: bool | None = None,
    progress: bool = False,
    init_scale: float = 1.0,
    pilot: int = 0,
    pilot_warmup: int | None = None,
    max_tree_depth: int = 10,
    chunk: int | None = None,
    time_budget_s: float | None = None,
    log=None,
    checkpoint=None,
    max_seconds: float | None = None,
) -> JointPosterior:
    """NumPyro NUTS on :func:`make_joint_numpyro_model`, the chains started from the joint Laplace mode plus
    draws of the Laplace approximation scaled by ``init_scale`` (1: draws of the approximation itself; 0: all
    chains at the mode), which is also the dense inverse mass matrix (warm-up then tunes the step size only,
    unless the Hessian was not positive definite or ``adapt_mass``).

    ``pilot`` > 0: first ``pilot_warmup`` (default ``warmup``) warm-up iterations and ``pilot`` draws per chain on
    the Laplace metric, then the metric's per-coordinate scales are set to the pilot draws' (correlations kept,
    :func:`rescaled_metric`), and the chains go on from the pilot's last states with ``warmup`` warm-up
    iterations (step size re-tuned) and ``draws`` draws; the pilot draws are discarded.

    ``chunk``: draw in chunks of this many draws per chain (the kept draws are a whole number of chunks, at
    least ``draws``), calling ``log(line)`` (progress: draws, divergences, steps, max R-hat so far) and
    ``checkpoint(posterior_so_far)`` after each; with ``time_budget_s`` the sampling stops after the chunk that
    would leave too little time for another (counted from the call), so a long run always returns what it has
    (``timings["stopped_early"]``).

    ``max_seconds``: the wall-clock budget of the whole run (warm-up included), checked after every compiled step (at
    most :data:`~stellarinf.inference.samplers.NUTS_CHUNK` iterations) as for one star
    (:func:`~stellarinf.inference.samplers.budget_verdict`): when the steps so far project past it, NUTS stops with
    :class:`~stellarinf.inference.samplers.SamplerBudgetExceeded` (what it measured, what to do) and the caller falls
    back to the Laplace draws."""
    from numpyro.infer import NUTS

    from .samplers import NUTS_CHUNK, NutsClock, SamplerBudgetExceeded, _nuts_chunk_runner, _progress_bar

    if chains < 1 or draws < 1 or warmup < 0 or pilot < 0:
        raise JointError(
            f"need chains >= 1, draws >= 1, warmup >= 0 and pilot >= 0 (got {chains}, {draws}, {warmup}, {pilot})"
        )
    if chunk is not None and chunk < 1:
        raise JointError(f"chunk must be a positive number of draws per chain, got {chunk}")
    say = log or (lambda line: None)
    t0 = time.perf_counter()
    idx = problem.index()
    key = jax.random.key(seed + 7919)
    z0 = lap.mean_z + init_scale * (lap.sample_z(key, chains) - lap.mean_z)
    good = np.array([np.isfinite(float(_log_density(problem, jnp.asarray(z)))) for z in z0])
    z0[~good] = lap.mean_z
    # NumPyro ravels the sites in sorted-name order, each site's elements in order
    order = np.concatenate([idx[name] for name in sorted(problem.site_names)])
    if adapt_mass is None:
        adapt_mass = not lap.hessian_ok
    model = make_joint_numpyro_model(problem)
    n_chunk = draws if chunk is None else int(chunk)
    # each compiled step runs at most NUTS_CHUNK iterations, so the budget and the bar see a long warm-up or an
    # unchunked draw phase as it goes, not only after it (the step length is one compiled program either way)
    n_step = min(n_chunk, NUTS_CHUNK)

    # The loop is ours, not numpyro.infer.MCMC's: MCMC.run compiles its whole sampling loop again on every call
    # (a fresh closure each time), so a run drawn in chunks compiled the joint model once per chunk and chain and
    # died inside LLVM ("Cannot allocate memory") at its ninth chunk. Here each kernel compiles one program per
    # chunk length, reused by every chunk (warm-up included) and every chain.
    def start(metric, n_warmup, positions, rng):
        kernel = NUTS(
            model,
            target_accept_prob=target_accept,
            dense_mass=True,
            inverse_mass_matrix=jnp.asarray(metric[np.ix_(order, order)]),
            adapt_mass_matrix=bool(adapt_mass),
            max_tree_depth=max_tree_depth,
        )
        keys = jax.random.split(rng, chains)
        per_chain = [
            kernel.init(keys[c], n_warmup, init_params=positions(c), model_args=(), model_kwargs={})
            for c in range(chains)
        ]
        return kernel, _nuts_chunk_runner(kernel), jax.tree.map(lambda *xs: jnp.stack(xs), *per_chain)

    n_total = (pilot and (warmup if pilot_warmup is None else pilot_warmup) + pilot) + warmup + draws
    bar = _progress_bar(progress, n_total, "joint NUTS")
    clock = NutsClock(
        max_seconds,
        n_total,
        name="joint NUTS",
        advice="Use the joint Laplace draws (--sampler laplace), fewer stars per joint fit, a GPU, or a larger budget "
        "(--max-minutes)",
        start=t0,
    )

    def step(run, state, n):
        state, fields = run(state, n)
        if bar is not None:
            bar.update(n)
        if max_seconds is not None:
            jax.block_until_ready(fields)
            try:
                clock.tick(n, fields["num_steps"])
            except SamplerBudgetExceeded:
                if bar is not None:
                    bar.close()
                raise
        return state, fields

    def advance(run, state, n, keep=False):
        """``n`` iterations of every chain in steps of at most ``n_step`` (the one compiled length, and a remainder);
        with ``keep``, also their per-iteration fields concatenated (chains, n, ...)."""
        pieces = []
        while n > 0:
            state, fields = step(run, state, min(n, n_step))
            if keep:
                pieces.append(fields)
            n -= min(n, n_step)
        if not keep:
            return state, None
        return state, jax.tree.map(lambda *parts: np.concatenate([np.asarray(a) for a in parts], axis=1), *pieces)

    timings: dict[str, Any] = {"init_s": time.perf_counter() - t0}
    metric = lap.metric_z

    def positions(c):
        return {name: jnp.asarray(z0[c, idx[name]]) for name in problem.site_names}

    ratio = None
    if pilot:
        t1 = time.perf_counter()
        n_pw = warmup if pilot_warmup is None else pilot_warmup
        kernel, run, state = start(metric, n_pw, positions, jax.random.key(seed + 1))
        state, _ = advance(run, state, n_pw)
        state, fields = advance(run, state, pilot, keep=True)
        pilot_samples = _constrained_draws(kernel, problem, fields["z"])
        metric, ratio = rescaled_metric(metric, _draws_z(problem, pilot_samples))
        last = {name: np.asarray(state.z[name]) for name in problem.site_names}

        def positions(c, last=last):
            return {name: jnp.asarray(last[name][c]) for name in problem.site_names}

        n_pilot_steps = int(np.sum(fields["num_steps"]))
        timings["pilot_gradients"] = n_pilot_steps
        timings["pilot_s"] = time.perf_counter() - t1
        say(
            f"pilot: {chains} × ({n_pw} + {pilot}) in {timings['pilot_s']:.0f} s, "
            f"{int(np.sum(fields['diverging']))} divergent, {n_pilot_steps / (chains * pilot):.1f} steps per draw; "
            f"variance / Laplace: median {np.median(ratio):.2f}, range {ratio.min():.2f}–{ratio.max():.2f}"
        )
    t1 = time.perf_counter()
    kernel, run, state = start(metric, warmup, positions, jax.random.key(seed))
    state, _ = advance(run, state, warmup)
    fields_names = ("diverging", "num_steps", "energy", "accept_prob", "potential_energy")
    parts, extras = [], []
    stopped_early = False
    while True:
        tc = time.perf_counter()
        state, fields = advance(run, state, n_chunk, keep=True)
        parts.append(_constrained_draws(kernel, problem, fields["z"]))
        extras.append({k: np.asarray(fields[k]) for k in fields_names})
        dt = time.perf_counter() - tc
        done = len(parts) * n_chunk
        post = _joint_posterior(problem, parts, extras, timings, t0, t1)
        if chunk is not None:
            say(
                f"draws {done}/{draws} per chain ({time.perf_counter() - t0:.0f} s): {post.n_divergent} divergent, "
                f"{np.mean(post.stats['n_steps']):.1f} steps per draw, max R-hat {_max_rhat(post):.4f}"
            )
            if checkpoint is not None:
                checkpoint(post)
        if done >= draws:
            break
        if time_budget_s is not None and time.perf_counter() - t0 + 1.1 * dt > time_budget_s:
            stopped_early = True
            say(f"time budget {time_budget_s:.0f} s: stopping at {done} draws per chain")
            break
    if bar is not None:
        bar.close()
    post.timings["stopped_early"] = stopped_early
    post.timings["step_size"] = [float(v) for v in np.ravel(np.asarray(state.adapt_state.step_size))]
    if ratio is not None:
        post.timings["metric_variance_ratio"] = [float(np.min(ratio)), float(np.median(ratio)), float(np.max(ratio))]
    return post


def _constrained_draws(kernel, problem: JointProblem, z: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unconstrained NUTS draws (site → (chains, draws, ...)) → constrained, each site (chains, draws, n)."""
    constrain = jax.vmap(jax.vmap(kernel.postprocess_fn((), {})))
    x = constrain({name: jnp.asarray(z[name]) for name in problem.site_names})
    return {name: np.asarray(x[name]).reshape(*np.shape(z[name])[:2], -1) for name in problem.site_names}


def _joint_posterior(problem, parts, extras, timings, t0, t1) -> JointPosterior:
    out = {name: np.concatenate([p[name] for p in parts], axis=1) for name in problem.site_names}
    extra = {k: np.concatenate([e[k] for e in extras], axis=1) for k in extras[0]}
    n_steps = extra["num_steps"].astype(np.int64)
    stats = {
        "diverging": extra["diverging"].astype(bool),
        "tree_depth": np.ceil(np.log2(n_steps + 1)).astype(np.int64),
        "n_steps": n_steps,
        "energy": extra["energy"],
        "acceptance_rate": extra["accept_prob"],
        "lp": -extra["potential_energy"],
    }
    now = time.perf_counter()
    return JointPosterior(
        method="numpyro-nuts",
        samples=out,
        stats=stats,
        timings={**timings, "sampling_s": now - t1, "total_s": now - t0},
        n_gradient_evals=int(n_steps.sum()),
    )


def _max_rhat(post: JointPosterior) -> float:
    """Largest rank-normalised split R-hat over every element of every site (NaN with one chain)."""
    import arviz as az

    if post.n_chains < 2:
        return float("nan")
    worst = 0.0
    for v in post.samples.values():
        r = np.asarray(az.rhat(az.convert_to_dataset({"x": v}))["x"])
        worst = max(worst, float(np.nanmax(r)))
    return worst


def laplace_draws(problem: JointProblem, lap: JointLaplace, *, chains: int = 4, draws: int = 500, seed: int = 0):
    """Independent draws of the joint Laplace approximation, shaped like chains (a quick look, no MCMC). Each
    star's v sin i and v macro, when both are its own and free, follow their ring as a single star's do
    (:func:`star_rings`; ``tuning["ring"]`` says what was found per star)."""
    t0 = time.perf_counter()
    z = lap.sample_z(jax.random.key(seed + 1), chains * draws, metric=False)
    z, ring = star_rings(problem, z, lap.mean_z, seed=seed + 2)
    return JointPosterior(
        method="laplace",
        samples=problem.to_numpy(z.reshape(chains, draws, -1)),
        stats={},
        timings={"sampling_s": time.perf_counter() - t0, "total_s": time.perf_counter() - t0},
        n_gradient_evals=0,
        tuning={"ring": ring} if ring else {},
    )


def star_rings(problem: JointProblem, z_draws, z_mode, seed: int = 0) -> tuple[np.ndarray, dict[int, dict]]:
    """Joint Laplace draws ``z_draws`` (n, n_free) with each star's v sin i and v macro moved onto its ring
    (:func:`.ring.ring_draws` on the star as a one-star problem, its shared values held at the joint mode); every
    other coordinate is untouched. Only where both are per-star parameters: a shared v sin i or v macro is one value
    for many stars, not a star's ring. Returns the draws and, per star index, what its scan found."""
    from .ring import ring_draws

    z = np.array(z_draws, dtype=np.float64)
    if not {"vsini", "vmacro"} <= set(problem.star_names):
        return z, {}
    k = problem.n_star_params  # only the star's own coordinates are written back
    found = {}
    for i, model in enumerate(problem.models):
        pos = problem.star_block(i)
        moved, info = ring_draws(problem.single_problem(model), z[:, pos], np.asarray(z_mode)[pos], seed=seed + i)
        if info:
            z[:, pos[:k]] = moved[:, :k]
            found[i] = info
    return z, found
