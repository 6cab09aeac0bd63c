"""The NumPyro model: one ``numpyro.sample`` site per free parameter, the likelihood as a factor.

No physics here: the forward model lives in :class:`~stellarinf.observe.model.ObservationModel`.
The bounded priors (``Uniform``/``TruncatedNormal`` on the box) make NumPyro sample in the same
logit-scaled unconstrained space as :mod:`stellarinf.inference.transforms`.
"""

from __future__ import annotations

import math

import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from .density import Problem
from .priors import GAUSSIAN, Prior


def prior_distribution(prior: Prior) -> dist.Distribution:
    """The NumPyro distribution of one :class:`Prior` (support = its box)."""
    lo, hi = prior.lower, prior.upper
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
