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


def axis_label(name: str) -> str:
    """``name [unit]`` for a posterior axis (``teff [K]``, ``li_fe [dex]``, ``rv [km/s]``); bare name if unitless."""
    from .results import unit_for

    unit = unit_for(name)
    return f"{name} [{unit}]" if unit else name


def _readable_ticks(axis, rotate: bool) -> None:
    """At most 3 ticks, plain numbers (no offset such as ``+5.772e3`` in a corner), labels at a legible size."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    axis.set_major_locator(MaxNLocator(3, prune="both"))
    fmt = ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    axis.set_major_formatter(fmt)
    for label in axis.get_ticklabels():
        label.set_fontsize(TICK_FONTSIZE)
        if rotate:
            label.set_rotation(45)
            label.set_horizontalalignment("right")


TICK_FONTSIZE = 8
PANEL_INCHES = 1.7


# a corner plot beyond this many parameters is too large to read (37 of a broad-domain fit: 1,369 panels)
CORNER_MAX = 14


def corner_names(names: Sequence[str], most: int = CORNER_MAX) -> list[str]:
    """The parameters a corner plot shows by default: all of ``names`` up to ``most``; beyond, the stellar labels
    and nuisances only (every ``[X/Fe]`` but ``[α/Fe]`` left out: the summary table has them)."""
    names = list(names)
    if len(names) <= most:
        return names
    return [n for n in names if not n.endswith("_fe") or n == "alpha_fe"]


def plot_corner(
    idata,
    var_names: Sequence[str] | None = None,
    truth: Mapping[str, float] | None = None,
    path=None,
    max_points: int = 4000,
):
    """Corner plot: histograms on the diagonal, draws below, truths (if given) as red lines and squares.

    Axes carry the label and its unit; a legend names the posterior draws and the truth; the panels fill the
    figure (the title sits just above them)."""
    plt = _plt()
    from matplotlib.lines import Line2D

    post = idata.posterior
    shown = ""
    if var_names is None:
        names = json.loads(post.attrs.get("parameters", "null") or "null") or list(post.data_vars)
        fitted = [n for n in names if not n.startswith("cont")]
        var_names = corner_names(fitted)
        if len(var_names) < len(fitted):
            shown = f"; {len(var_names)} of {len(fitted)} parameters: the stellar labels and nuisances"
    n = len(var_names)
    draws = {v: np.asarray(post[v]).reshape(-1) for v in var_names}
    total = next(iter(draws.values())).size
    sel = np.random.default_rng(0).choice(total, size=min(total, max_points), replace=False)
    side = PANEL_INCHES * n + 1.2
    fig, axes = plt.subplots(n, n, figsize=(side, side), squeeze=False)
    # margins in inches (room for rotated tick labels and axis labels), converted to figure fractions
    left, bottom, top = 1.0 / side, 1.0 / side, 1.0 - 0.45 / side
    fig.subplots_adjust(left=left, right=1.0 - 0.15 / side, bottom=bottom, top=top, wspace=0.06, hspace=0.06)
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
                _readable_ticks(ax.yaxis, rotate=False)
            _readable_ticks(ax.xaxis, rotate=True)
            if i == n - 1:
                ax.set_xlabel(axis_label(xj))
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(axis_label(yi))
            elif j > 0 and i != j:
                ax.set_yticklabels([])
    handles = [Line2D([], [], color="0.3", label="posterior draws (histogram, scatter)")]
    if truth:
        handles.append(Line2D([], [], color="C3", marker="s", ms=4, label="truth (input labels)"))
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.98, top), frameon=False, fontsize=10)
    fig.suptitle(f"posterior ({post.attrs.get('method', '')}{shown})", y=1.0 - 0.1 / side, va="top")
    _save(fig, path)
    return fig


def arm_slices(wavelength: np.ndarray, gap: float = 20.0) -> list[slice]:
    """Index ranges of the arms of a wavelength array (each arm ascending): a step more than ``gap`` × the median
    step, or a step back (arms given out of order), starts a new arm (one slice for a single arm)."""
    step = np.diff(wavelength)
    if step.size == 0:
        return [slice(0, wavelength.size)]
    cuts = np.flatnonzero((step > gap * np.median(np.abs(step))) | (step <= 0)) + 1
    edges = [0, *cuts.tolist(), wavelength.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def plot_fit(idata, path=None):
    """Data vs model (posterior predictive median and 68% band) with normalised residuals below; a spectrum of
    several arms gets a column per arm (widths in proportion to their ranges), so no line crosses the gaps."""
    plt = _plt()
    cd = idata.constant_data
    wl = np.asarray(cd["wavelength"])
    err = np.asarray(cd["flux_error"])
    mask = np.asarray(cd["mask"]).astype(bool)
    flux = np.asarray(idata.observed_data["flux"])
    mf = np.asarray(idata.posterior_predictive["model_flux"]).reshape(-1, wl.size)
    lo, med, hi = np.percentile(mf, [15.865, 50, 84.135], axis=0)
    resid = np.where(mask, (flux - med) / err, np.nan)
    arms = arm_slices(wl)
    widths = [max(float(wl[a][-1] - wl[a][0]), 1e-6) for a in arms]
    fig, axes = plt.subplots(
        2,
        len(arms),
        figsize=(11 if len(arms) == 1 else 4 + 3 * len(arms), 5),
        sharex="col",
        sharey="row",
        squeeze=False,
        gridspec_kw={"height_ratios": [3, 1], "width_ratios": widths},
    )
    for k, a in enumerate(arms):
        ax, axr = axes[0, k], axes[1, k]
        ax.plot(wl[a], np.where(mask[a], flux[a], np.nan), color="k", lw=0.6, label="data")
        ax.fill_between(wl[a], lo[a], hi[a], color="C0", alpha=0.4, lw=0)
        ax.plot(wl[a], med[a], color="C0", lw=0.8, label="model (posterior median, 68%)")
        axr.plot(wl[a], resid[a], color="k", lw=0.5)
        axr.axhline(0, color="C0")
        for s in (-3, 3):
            axr.axhline(s, color="0.6", ls=":")
    axes[0, 0].set_ylabel("normalised flux")
    axes[0, 0].legend(loc="lower left", fontsize=8)
    axes[1, 0].set_ylabel("(data−model)/σ")
    if len(arms) == 1:
        axes[1, 0].set_xlabel("vacuum wavelength [Å]")
    else:
        fig.supxlabel("vacuum wavelength [Å]")
    chi2r = idata.posterior.attrs.get("chi2_reduced")
    if chi2r is not None:
        fig.suptitle(f"reduced χ² of the best fit = {float(chi2r):.3f}")
    _save(fig, path)
    return fig
