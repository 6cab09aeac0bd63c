"""Plots on request: corner (pair) plot of the posterior and data vs model with residuals.

Both take an ArviZ ``InferenceData`` made by :func:`stellarinf.inference.results.to_inference_data`
and write a PNG (or any matplotlib format) when ``path`` is given; they return the figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from ..io.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    if path is None:
        return
    from pathlib import Path

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")


def plot_corner(
    idata,
    var_names: Sequence[str] | None = None,
    truth: Mapping[str, float] | None = None,
    path=None,
    max_points: int = 4000,
):
    """Corner plot: histograms on the diagonal, scatter of draws below, truths as lines if given."""
    plt = _plt()
    post = idata.posterior
    if var_names is None:
        names = json.loads(post.attrs.get("parameters", "null") or "null") or list(post.data_vars)
        var_names = [n for n in names if not n.startswith("cont")]
    n = len(var_names)
    draws = {v: np.asarray(post[v]).reshape(-1) for v in var_names}
    total = next(iter(draws.values())).size
    sel = np.random.default_rng(0).choice(total, size=min(total, max_points), replace=False)
    fig, axes = plt.subplots(n, n, figsize=(1.9 * n + 1, 1.9 * n + 1), squeeze=False)
    for i, yi in enumerate(var_names):
        for j, xj in enumerate(var_names):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                ax.hist(draws[xj], bins=40, color="0.3", histtype="step")
                ax.set_yticks([])
                if truth and xj in truth:
                    ax.axvline(truth[xj], color="C3")
            else:
                ax.plot(draws[xj][sel], draws[yi][sel], ",", color="0.2", alpha=0.5)
                if truth and xj in truth and yi in truth:
                    ax.plot(truth[xj], truth[yi], "s", color="C3", ms=4)
            if i == n - 1:
                ax.set_xlabel(xj)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(yi)
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
    fig.suptitle(f"posterior ({post.attrs.get('method', '')})")
    _save(fig, path)
    return fig


def plot_fit(idata, path=None):
    """Data vs model (posterior predictive median and 68% band) with normalised residuals below."""
    plt = _plt()
    cd = idata.constant_data
    wl = np.asarray(cd["wavelength"])
    err = np.asarray(cd["flux_error"])
    mask = np.asarray(cd["mask"]).astype(bool)
    flux = np.asarray(idata.observed_data["flux"])
    mf = np.asarray(idata.posterior_predictive["model_flux"]).reshape(-1, wl.size)
    lo, med, hi = np.percentile(mf, [15.865, 50, 84.135], axis=0)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(wl, np.where(mask, flux, np.nan), color="k", lw=0.6, label="data")
    ax.fill_between(wl, lo, hi, color="C0", alpha=0.4, lw=0)
    ax.plot(wl, med, color="C0", lw=0.8, label="model (posterior median, 68%)")
    ax.set_ylabel("normalised flux")
    ax.legend(loc="lower left", fontsize=8)
    resid = np.where(mask, (flux - med) / err, np.nan)
    axr.plot(wl, resid, color="k", lw=0.5)
    axr.axhline(0, color="C0")
    for s in (-3, 3):
        axr.axhline(s, color="0.6", ls=":")
    axr.set_ylabel("(data−model)/σ")
    axr.set_xlabel("vacuum wavelength [Å]")
    chi2r = idata.posterior.attrs.get("chi2_reduced")
    if chi2r is not None:
        ax.set_title(f"reduced χ² of the best fit = {float(chi2r):.3f}")
    _save(fig, path)
    return fig
