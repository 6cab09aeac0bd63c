"""Prior specifications: uniform over the emulator's training box by default, user overrides on top.

A prior is a :class:`Prior` with a support box ``[lower, upper]`` (never wider than the training box
or the nuisance bounds of the observation model) and a shape:

- ``uniform``: flat on the box (improper flat if the box is unbounded, e.g. continuum coefficients);
- ``gaussian``: ``N(mean, sigma)`` truncated to the box, e.g. ``logg=4.4+-0.1`` from asteroseismology.

Text forms accepted by :func:`parse_prior` (the CLI's ``--prior``)::

    logg=4.4+-0.1      logg=4.4±0.1      logg = 4.4 +/- 0.1      Gaussian, truncated to the box
    teff=5000:6000     teff=5000..6000                            uniform on a narrower box

The parameters in :data:`FOLDED` (v sin i, v macro) get ``fold=True`` when their box starts at 0: the prior is still on the
parameter itself, but samplers and optimisers move a signed value whose magnitude it is
(:mod:`stellarinf.inference.transforms` says why and how).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import LabelError, StellarinfError
from . import transforms


class PriorError(StellarinfError, ValueError):
    """A prior specification cannot be used (syntax, unknown parameter, empty support)."""


UNIFORM, GAUSSIAN = "uniform", "gaussian"
# parameters whose likelihood is even about 0 (the width of a symmetric broadening kernel): sampled folded when their
# box starts at 0, so an unresolved value is a ridge through the middle of the sampler's box, not a tail to -inf.
# v macro since the forty-second session: with v sin i it shares the broadening, and an unresolved pair left v macro's
# logit tail in laplace-is's proposals (a synthetic Sun at S/N 100, v sin i 2, v macro 3: Pareto k 0.87 -> 0.51)
FOLDED = ("vsini", "vmacro")


@dataclasses.dataclass(frozen=True)
class Prior:
    """Prior of one parameter: ``kind`` is ``"uniform"`` or ``"gaussian"`` (truncated to the box); ``fold``: sampled
    folded at ``lower`` (:data:`FOLDED`; the density is still that of the parameter)."""

    kind: str = UNIFORM
    lower: float = -math.inf
    upper: float = math.inf
    mean: float = 0.0
    sigma: float = 1.0
    fold: bool = False

    def __post_init__(self):
        if self.kind not in (UNIFORM, GAUSSIAN):
            raise PriorError(f"prior kind must be 'uniform' or 'gaussian', got {self.kind!r}")
        if math.isnan(self.lower) or math.isnan(self.upper) or not self.lower < self.upper:
            raise PriorError(f"prior box must have lower < upper, got [{self.lower}, {self.upper}]")
        if self.kind == GAUSSIAN and not (math.isfinite(self.mean) and math.isfinite(self.sigma) and self.sigma > 0):
            raise PriorError(f"Gaussian prior needs a finite mean and sigma > 0, got {self.mean} +- {self.sigma}")
        if self.fold and not math.isfinite(self.upper - self.lower):
            raise PriorError(f"a folded prior needs a finite box, got [{self.lower}, {self.upper}]")

    def describe(self) -> str:
        if self.kind == GAUSSIAN:
            return f"N({self.mean:g}, {self.sigma:g}) on [{self.lower:g}, {self.upper:g}]"
        return f"U[{self.lower:g}, {self.upper:g}]"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class PriorRequest:
    """A user's prior before it is checked against a model's parameters and bounds."""

    name: str
    kind: str
    a: float  # mean (gaussian) or lower (uniform)
    b: float  # sigma (gaussian) or upper (uniform)


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GAUSS_RE = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*({_NUM})\s*(?:\+-|\+/-|±)\s*({_NUM})\s*$")
_UNIF_RE = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*({_NUM})\s*(?::|\.\.)\s*({_NUM})\s*$")


def parse_prior(text: str) -> PriorRequest:
    """Parse ``"logg=4.4+-0.1"`` (truncated Gaussian) or ``"teff=5000:6000"`` (uniform)."""
    if not isinstance(text, str):
        raise PriorError(f"a prior must be text such as 'logg=4.4+-0.1', got {type(text).__name__}")
    m = _GAUSS_RE.match(text)
    if m:
        name, mean, sigma = m.group(1).lower(), float(m.group(2)), float(m.group(3))
        if not sigma > 0:
            raise PriorError(f"prior {text!r}: the width must be positive; write e.g. '{name}={mean:g}+-0.1'")
        return PriorRequest(name, GAUSSIAN, mean, sigma)
    m = _UNIF_RE.match(text)
    if m:
        name, lo, hi = m.group(1).lower(), float(m.group(2)), float(m.group(3))
        if not lo < hi:
            raise PriorError(
                f"prior {text!r}: the range must have lower < upper; write e.g. '{name}={min(lo, hi):g}:{max(lo, hi):g}'"
            )
        return PriorRequest(name, UNIFORM, lo, hi)
    raise PriorError(
        f"cannot parse prior {text!r}; use NAME=MEAN+-SIGMA for a Gaussian (e.g. 'logg=4.4+-0.1') "
        "or NAME=LOW:HIGH for a uniform range (e.g. 'teff=5000:6000')"
    )


def _as_requests(priors) -> list[PriorRequest]:
    if priors is None:
        return []
    if isinstance(priors, (str, PriorRequest)):
        priors = [priors]
    out = []
    if isinstance(priors, Mapping):
        for name, spec in priors.items():
            if isinstance(spec, Prior):
                a, b = (spec.mean, spec.sigma) if spec.kind == GAUSSIAN else (spec.lower, spec.upper)
                out.append(PriorRequest(name, spec.kind, a, b))
            elif isinstance(spec, tuple) and len(spec) == 2:
                out.append(PriorRequest(name, GAUSSIAN, float(spec[0]), float(spec[1])))
            else:
                raise PriorError(
                    f"prior for {name!r}: give a Prior, a (mean, sigma) tuple or text like '{name}=4.4+-0.1'"
                )
        return out
    for p in priors:
        out.append(p if isinstance(p, PriorRequest) else parse_prior(p))
    return out


def resolve_priors(
    bounds: Mapping[str, tuple[float, float]], overrides: Iterable | Mapping | str | None = None
) -> dict[str, Prior]:
    """Priors for every parameter in ``bounds`` (the training box + nuisance bounds).

    Default: uniform over the bounds. ``overrides`` (texts, :class:`PriorRequest` or a mapping
    name → Prior / (mean, sigma)) replace the default for their parameter; a Gaussian is truncated to
    the bounds and a uniform range must lie inside them. Unknown names raise :class:`PriorError`.
    """
    priors = {name: Prior(UNIFORM, float(lo), float(hi)) for name, (lo, hi) in bounds.items()}
    seen = set()
    for req in _as_requests(overrides):
        if req.name not in bounds:
            raise PriorError(
                f"prior for unknown parameter {req.name!r}; this fit has parameters {', '.join(bounds)} "
                "(check the spelling: canonical names are teff, logg, feh, vmic, <element>_fe, rv, vsini, vmacro)"
            )
        if req.name in seen:
            raise PriorError(f"two priors given for {req.name!r}; give one")
        seen.add(req.name)
        lo, hi = (float(v) for v in bounds[req.name])
        if req.kind == GAUSSIAN:
            mean, sigma = req.a, req.b
            # distance (in sigma) of the mean outside the box: beyond 3 sigma there is no usable mass
            gap = max(lo - mean, mean - hi, 0.0) / sigma
            if gap > 3:
                raise PriorError(
                    f"prior {req.name}={mean:g}+-{sigma:g} lies outside the model's range [{lo:g}, {hi:g}] "
                    "(more than 3 sigma away); the emulator cannot describe such a star: use a model trained "
                    "on a box that covers it, or check the prior"
                )
            priors[req.name] = Prior(GAUSSIAN, lo, hi, mean, sigma)
        else:
            a, b = req.a, req.b
            if a < lo - 1e-9 * abs(hi - lo) or b > hi + 1e-9 * abs(hi - lo):
                raise PriorError(
                    f"uniform prior {req.name}={a:g}:{b:g} reaches outside the model's range [{lo:g}, {hi:g}]; "
                    "narrow it to lie inside (samplers never leave the training box)"
                )
            priors[req.name] = Prior(UNIFORM, max(a, lo), min(b, hi))
    return {name: _with_fold(name, p) for name, p in priors.items()}


def _with_fold(name: str, prior: Prior) -> Prior:
    """``prior`` folded at 0 if ``name`` is in :data:`FOLDED` and its box is ``[0, finite]`` (even physics only there)."""
    fold = name in FOLDED and prior.lower == 0.0 and math.isfinite(prior.upper)
    return dataclasses.replace(prior, fold=fold)


class PriorArrays(eqx.Module):
    """Priors of the free parameters as arrays (n_free,), for pure-JAX evaluation.

    The numbers (``lower``, ``upper``, ``mean``, ``sigma``, ``log_norm``, ``gaussian_weight``) are array leaves: a
    jitted function that takes a :class:`~stellarinf.inference.density.Problem` traces them, so fits whose priors
    differ only in their numbers (a Gaussian's mean and width, a box's finite ends, a Gaussian prior instead of a
    uniform one: a catalogue where some stars have an asteroseismic log g) share one compiled program. The
    *structure* is static (hashed into the compiled program): which bounds are finite (the transforms'
    interval/lower/upper/real kind, :mod:`.transforms`), which parameters are folded. Infinite bounds are kept as
    ``±inf`` values; the transforms only look at them where the static structure says they are finite."""

    lower: Float[Array, "n"]
    upper: Float[Array, "n"]
    mean: Float[Array, "n"]
    sigma: Float[Array, "n"]
    log_norm: Float[Array, "n"]  # log normalising constant per parameter
    gaussian_weight: Float[Array, "n"]  # 1 where the prior is Gaussian, 0 where uniform (mean 0, sigma 1 there)
    lower_finite: tuple[bool, ...] = eqx.field(static=True)
    upper_finite: tuple[bool, ...] = eqx.field(static=True)
    folded: tuple[bool, ...] = eqx.field(static=True)  # sampled folded at the lower bound (see :mod:`.transforms`)

    @classmethod
    def from_priors(cls, priors: Mapping[str, Prior], names) -> "PriorArrays":
        ps = [priors[n] for n in names]
        lower = np.array([p.lower for p in ps], dtype=np.float64)
        upper = np.array([p.upper for p in ps], dtype=np.float64)
        # a uniform prior's Gaussian term is weighted 0 but still computed: keep it finite (and its gradient)
        mean = np.array([p.mean if p.kind == GAUSSIAN else 0.0 for p in ps], dtype=np.float64)
        sigma = np.array([p.sigma if p.kind == GAUSSIAN else 1.0 for p in ps], dtype=np.float64)
        log_norm = np.zeros(len(ps))
        for i, p in enumerate(ps):
            if p.kind == GAUSSIAN:
                from scipy.special import ndtr

                mass = ndtr((p.upper - p.mean) / p.sigma) - ndtr((p.lower - p.mean) / p.sigma)
                log_norm[i] = -math.log(max(mass, 1e-300)) - math.log(p.sigma) - 0.5 * math.log(2 * math.pi)
            elif math.isfinite(p.upper - p.lower):
                log_norm[i] = -math.log(p.upper - p.lower)
        weight = np.array([1.0 if p.kind == GAUSSIAN else 0.0 for p in ps])
        for a in (lower, upper, mean, sigma, log_norm, weight):
            a.flags.writeable = False  # shared by the cache of :func:`.density._prior_arrays`
        return cls(
            lower,
            upper,
            mean,
            sigma,
            log_norm,
            weight,
            lower_finite=tuple(math.isfinite(p.lower) for p in ps),
            upper_finite=tuple(math.isfinite(p.upper) for p in ps),
            folded=tuple(bool(p.fold) for p in ps),
        )

    # ---- the static structure, as NumPy arrays -------------------------------------------------------
    @property
    def gaussian(self) -> tuple[bool, ...]:
        """Which priors are Gaussian (eager: needs concrete numbers, not traced ones)."""
        return tuple(bool(w) for w in np.asarray(self.gaussian_weight) > 0)

    @property
    def fold(self) -> np.ndarray:
        return np.array(self.folded, dtype=bool)

    @property
    def kind(self) -> np.ndarray:
        """Each parameter's transform kind (:func:`.transforms.bound_kinds`), from the static finite-bound pattern."""
        return transforms.bound_kinds(self.lower_finite, self.upper_finite)

    @property
    def boxed(self) -> np.ndarray:
        """Whether both bounds are finite (a logit-scaled box), per parameter."""
        return np.array(self.lower_finite, dtype=bool) & np.array(self.upper_finite, dtype=bool)

    @property
    def structure(self) -> tuple:
        """What a compiled program depends on (the rest are traced numbers)."""
        return self.lower_finite, self.upper_finite, self.folded

    def __len__(self) -> int:
        return len(self.folded)

    # ---- pure JAX ------------------------------------------------------------------------------------
    def to_constrained(self, z: Float[Array, "... n"]) -> Float[Array, "... n"]:
        """:func:`.transforms.to_constrained` with these bounds, kinds and folds."""
        return transforms.to_constrained(z, self.lower, self.upper, self.fold, kind=self.kind)

    def to_unconstrained(self, x: Float[Array, "... n"]) -> Float[Array, "... n"]:
        """:func:`.transforms.to_unconstrained` with these bounds, kinds and folds."""
        return transforms.to_unconstrained(x, self.lower, self.upper, self.fold, kind=self.kind)

    def log_abs_det_jacobian(self, z: Float[Array, "... n"]) -> Float[Array, "... n"]:
        """:func:`.transforms.log_abs_det_jacobian` with these bounds and kinds."""
        return transforms.log_abs_det_jacobian(z, self.lower, self.upper, kind=self.kind)

    def log_prob(self, x: Float[Array, "n"]) -> Float[Array, ""]:
        """Sum of log prior densities at ``x`` (assumed inside the box; the transforms guarantee it)."""
        gauss = -0.5 * ((x - self.mean) / self.sigma) ** 2  # finite everywhere: uniform priors carry mean 0, sigma 1
        return jnp.sum(self.gaussian_weight * gauss + self.log_norm)

    # ---- eager helpers -------------------------------------------------------------------------------
    def unfolded(self) -> "PriorArrays":
        """The same priors with no parameter folded (the same numbers: no new compile of anything but the fold)."""
        return dataclasses.replace(self, folded=(False,) * len(self))

    def select(self, indices) -> "PriorArrays":
        """The priors of the parameters at ``indices`` (their numbers sliced, traced or not)."""
        idx = [int(i) for i in indices]
        pick = np.asarray(idx, dtype=int)
        return PriorArrays(
            *(
                a[..., pick]
                for a in (self.lower, self.upper, self.mean, self.sigma, self.log_norm, self.gaussian_weight)
            ),
            lower_finite=tuple(self.lower_finite[i] for i in idx),
            upper_finite=tuple(self.upper_finite[i] for i in idx),
            folded=tuple(self.folded[i] for i in idx),
        )

    def to_priors(self) -> tuple[Prior, ...]:
        """The :class:`Prior` of each parameter (eager: needs concrete numbers, not traced ones)."""
        lower, upper, mean, sigma = (
            np.asarray(a, dtype=np.float64) for a in (self.lower, self.upper, self.mean, self.sigma)
        )
        gaussian = self.gaussian
        return tuple(
            Prior(
                GAUSSIAN if gaussian[i] else UNIFORM,
                float(lower[i]),
                float(upper[i]),
                float(mean[i]),
                float(sigma[i]),
                self.folded[i],
            )
            for i in range(len(self))
        )

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws (n, n_free) from the priors (flat improper priors → standard normal around 0)."""
        from scipy.stats import truncnorm

        lower, upper, mean, sigma = (
            np.asarray(a, dtype=np.float64) for a in (self.lower, self.upper, self.mean, self.sigma)
        )
        gaussian = self.gaussian
        out = np.empty((n, len(lower)))
        for i in range(len(lower)):
            lo, hi = lower[i], upper[i]
            if gaussian[i]:
                a, b = (lo - mean[i]) / sigma[i], (hi - mean[i]) / sigma[i]
                out[:, i] = truncnorm.rvs(a, b, loc=mean[i], scale=sigma[i], size=n, random_state=rng)
            elif np.isfinite(lo) and np.isfinite(hi):
                out[:, i] = rng.uniform(lo, hi, n)
            elif np.isfinite(lo):
                out[:, i] = lo + np.abs(rng.standard_normal(n))
            elif np.isfinite(hi):
                out[:, i] = hi - np.abs(rng.standard_normal(n))
            else:
                out[:, i] = rng.standard_normal(n)
        return out


def check_name(name: str, names) -> None:
    if name not in names:
        raise LabelError(f"unknown parameter {name!r}; this fit has {', '.join(names)}")
