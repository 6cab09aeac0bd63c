"""The NumPyro model: one ``numpyro.sample`` site per free parameter, the likelihood as a factor.

No physics here: the forward model lives in :class:`~stellarinf.observe.model.ObservationModel`.
The bounded priors (``Uniform``/``TruncatedNormal`` on the box) make NumPyro sample in the same
logit-scaled unconstrained space as :mod:`stellarinf.inference.transforms`. A folded prior (v sin i) keeps its
distribution but gets a support, :class:`FoldedInterval`, whose ``biject_to`` is the folded map of
:mod:`~stellarinf.inference.transforms` itself: the site's values are v sin i (never the signed value), and
NumPyro's density is :meth:`~stellarinf.inference.density.Problem.log_density`.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to

from . import transforms
from .density import Problem
from .priors import GAUSSIAN, Prior


class FoldedInterval(constraints.Constraint):
    """The box ``[lower, upper]`` of a parameter sampled folded at ``lower`` (only ``biject_to`` differs)."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    def __call__(self, x):
        return (x >= self.lower_bound) & (x <= self.upper_bound)

    def feasible_like(self, prototype):
        return jnp.broadcast_to((self.lower_bound + self.upper_bound) / 2, jnp.shape(prototype))

    def tree_flatten(self):
        return (self.lower_bound, self.upper_bound), (("lower_bound", "upper_bound"), dict())


class FoldedTransform(Transform):
    """Unconstrained ``z`` → the folded parameter, by :func:`.transforms.to_constrained` (``fold=True``)."""

    def __init__(self, lower, upper):
        self.lower, self.upper = lower, upper

    @property
    def codomain(self):
        return FoldedInterval(self.lower, self.upper)

    def __call__(self, x):
        return transforms.to_constrained(x, self.lower, self.upper, True)

    def _inverse(self, y):
        return transforms.to_unconstrained(y, self.lower, self.upper, True)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return transforms.log_abs_det_jacobian(x, self.lower, self.upper)

    def tree_flatten(self):
        return (), ((), {"lower": self.lower, "upper": self.upper})


@biject_to.register(FoldedInterval)
def _folded_bijection(constraint):
    return FoldedTransform(constraint.lower_bound, constraint.upper_bound)


class Folded(dist.Distribution):
    """``base`` (a distribution on ``[lower, upper]``) with the support :class:`FoldedInterval`: the same density,
    sampled folded."""

    pytree_data_fields = ("base",)
    pytree_aux_fields = ("_support",)

    def __init__(self, base: dist.Distribution, lower: float, upper: float):
        self.base = base
        self._support = FoldedInterval(lower, upper)
        super().__init__(base.batch_shape, base.event_shape)

    @property
    def support(self):
        return self._support

    def sample(self, key, sample_shape=()):
        return self.base.sample(key, sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)


def prior_distribution(prior: Prior) -> dist.Distribution:
    """The NumPyro distribution of one :class:`Prior` (support = its box; :class:`Folded` when ``prior.fold``)."""
    lo, hi = prior.lower, prior.upper
    if prior.fold:
        return Folded(prior_distribution(dataclasses.replace(prior, fold=False)), lo, hi)
    if prior.kind == GAUSSIAN:
        if math.isinf(lo) and math.isinf(hi):
            return dist.Normal(prior.mean, prior.sigma)
        return dist.TruncatedNormal(
            prior.mean, prior.sigma, low=None if math.isinf(lo) else lo, high=None if math.isinf(hi) else hi
        )
    if math.isfinite(lo) and math.isfinite(hi):
        return dist.Uniform(lo, hi)
    if math.isfinite(lo):
        support = constraints.greater_than(lo)
    elif math.isfinite(hi):
        support = constraints.less_than(hi)
    else:
        support = constraints.real
    return dist.ImproperUniform(support, (), ())


def make_numpyro_model(problem: Problem):
    """A NumPyro model function ``model()`` for the problem's spectrum (data are in the problem)."""
    dists = {name: prior_distribution(p) for name, p in zip(problem.names, problem.prior_specs)}

    def model():
        params = dict(problem.fixed)
        for name, d in dists.items():
            params[name] = numpyro.sample(name, d)
        numpyro.factor("log_likelihood", problem.obs_model.log_likelihood(params))

    return model
