"""Plots for Cramér–Rao forecasts: bounds vs S/N (or resolution, window), information per pixel,
correlation heat-map, bounds per label across set-ups, gradient spectra with the lines marked. Matplotlib with the Agg backend; every function returns the Figure and, given a
``path``, writes it atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .fisher import FisherResult, _unit
from .inference.plots import arm_slices
from .io.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    _plt().close(fig)
    return path


def _finish(fig, path=None, title: str = ""):
    """The common tail of every plot here: the title, the layout, the file if asked; returns the figure."""
    # the title and the room tight_layout leaves it in inches, not figure fractions: on a tall figure of many labels
    # the default (y 0.98) would sit an inch down, across the first row
    height = fig.get_size_inches()[1]
    if title:
        fig.suptitle(title, y=1.0 - 0.08 / height, va="top")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / height if title else 1.0))
    if path is not None:
        save_figure(fig, path)
    return fig


def _label_text(name: str) -> str:
    unit = _unit(name)
    return f"σ({name}) [{unit}]" if unit else f"σ({name})"


def _grid(n: int, ncols: int = 3):
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    return nrows, ncols


def plot_bounds_vs(
    table, x: str, labels: Sequence[str] | None = None, *, path=None, logx: bool = True, title: str = ""
):
    """One panel per label: marginal (solid) and conditional (dashed) bound against column ``x``.

    ``table`` is a scaling-law table from :mod:`stellarinf.forecast` with columns ``x``,
    ``marginal_<label>`` and ``conditional_<label>``. Non-numeric ``x`` (window names) gives a categorical axis.
    """
    plt = _plt()
    if labels is None:
        labels = [c[len("marginal_") :] for c in table.colnames if c.startswith("marginal_")]
    labels = list(labels)
    nrows, ncols = _grid(len(labels))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.2 * nrows), squeeze=False)
    xv = np.asarray(table[x])
    numeric = np.issubdtype(xv.dtype, np.number)
    pos = xv.astype(float) if numeric else np.arange(len(xv))
    for ax, name in zip(axes.ravel(), labels):
        m = np.asarray(table[f"marginal_{name}"], dtype=float)
        ax.plot(pos, np.where(np.isfinite(m), m, np.nan), "o-", label="marginal")
        cc = f"conditional_{name}"
        if cc in table.colnames:
            ax.plot(pos, np.asarray(table[cc], dtype=float), "s--", ms=3, label="conditional")
        if numeric and logx:
            ax.set_xscale("log")
        if np.all(np.asarray(m)[np.isfinite(m)] > 0):
            ax.set_yscale("log")
        if not numeric:
            ax.set_xticks(pos)
            ax.set_xticklabels([str(v) for v in xv], rotation=30, ha="right")
        ax.set_xlabel(x)
        ax.set_ylabel(_label_text(name))
        ax.grid(alpha=0.3, which="both")
    for ax in axes.ravel()[len(labels) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=8)
    return _finish(fig, path, title)


def plot_bounds_vs_snr(table, labels=None, *, path=None, title: str = "Cramér–Rao bounds vs S/N"):
    """Bounds against S/N (log–log; exact 1/(S/N) lines without priors or emulator error)."""
    return plot_bounds_vs(table, "snr", labels, path=path, title=title)


def plot_information_per_pixel(
    result: FisherResult,
    labels: Sequence[str] | None = None,
    *,
    kind: str = "marginal",
    wavelength=None,
    flux=None,
    path=None,
    title: str = "",
):
    """Fraction of each label's information carried by each pixel, stacked panels against wavelength.

    ``kind="marginal"`` shows the information left after marginalising the other free parameters
    (see :meth:`FisherResult.per_pixel_information`); ``"diagonal"`` the raw J²/σ². ``flux`` (optional)
    is drawn in a top panel for orientation.
    """
    plt = _plt()
    labels = list(labels or result.names)
    info = result.per_pixel_information(kind)
    wl = np.asarray(
        wavelength
        if wavelength is not None
        else result.wavelength
        if result.wavelength is not None
        else np.arange(info.shape[0])
    )
    n_top = 1 if flux is not None else 0
    fig, axes = plt.subplots(
        len(labels) + n_top, 1, figsize=(10, 1.4 * (len(labels) + n_top) + 0.6), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    breaks = [a.start for a in arm_slices(wl)[1:]]  # several arms: where each later one starts
    if flux is not None:
        axes[0].plot(*_broken(wl, np.asarray(flux, float), breaks), "k-", lw=0.6)
        axes[0].set_ylabel("flux")
    for ax, name in zip(axes[n_top:], labels):
        col = info[:, result.names.index(name)]
        total = col.sum()
        frac = col / total if total > 0 else np.zeros_like(col)
        x, y = _broken(wl, frac, breaks)
        ax.plot(x, y, lw=0.7)
        ax.fill_between(x, 0, y, alpha=0.3)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1].set_xlabel("vacuum wavelength [Å]" if wavelength is not None or result.wavelength is not None else "pixel")
    return _finish(fig, path, title or f"information per pixel ({kind}; each row normalised to unit sum)")


def _broken(wl: np.ndarray, y: np.ndarray, breaks: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``wl``, ``y`` with a NaN where each arm after the first starts, so no line is drawn across a gap."""
    return np.insert(wl.astype(float), breaks, np.nan), np.insert(y.astype(float), breaks, np.nan)


def plot_correlation(
    result: FisherResult,
    labels: Sequence[str] | None = None,
    *,
    path=None,
    title: str = "Cramér–Rao correlation matrix",
):
    """Heat-map of the correlation matrix of F⁻¹ with the coefficients written in the cells; ``labels``: the rows and
    columns shown (every parameter still marginalised: the block of the full matrix)."""
    plt = _plt()
    names = list(labels or result.names)
    idx = [result.names.index(n) for n in names]
    R = result.correlation()[np.ix_(idx, idx)]
    n = len(names)
    size = max(3.5, 0.55 * n + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(R, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticklabels(names)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{R[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(R[i, j]) > 0.6 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    return _finish(fig, path)


def plot_bounds_by_label(
    bounds: dict[str, dict[str, float]], labels: Sequence[str] | None = None, *, path=None, title: str = ""
):
    """Bound vs label, one line per set-up (Chem-I-Calc's standard comparison): ``bounds`` is
    ``{set-up name: {label: marginal bound}}``; Teff (K) gets its own panel, the dex-like labels share one."""
    plt = _plt()
    first = next(iter(bounds.values()), {})
    labels = list(labels or first)
    dex = [n for n in labels if n != "teff"]
    fig, axes = plt.subplots(
        1, 2, figsize=(2.0 + 0.55 * len(dex) + 2.5, 3.8), gridspec_kw={"width_ratios": [1, max(1, len(dex) / 2)]}
    )
    markers, styles = "os^Dv", ("-", "--", ":", "-.")
    for i, (name, vals) in enumerate(bounds.items()):
        # ten colours, then the next marker and line style: every set-up stays distinguishable in a long table
        color, marker, style = f"C{i % 10}", markers[(i // 10) % len(markers)], styles[(i // 10) % len(styles)]
        axes[0].plot([0], [vals.get("teff", math.nan)], marker, color=color, label=name)
        axes[1].plot(
            range(len(dex)),
            [vals.get(n, math.nan) for n in dex],
            marker=marker,
            ls=style,
            color=color,
            label=name,
            lw=1,
        )
    axes[0].set_xticks([0], ["teff"])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("σ(Teff) [K]")
    axes[1].set_xticks(range(len(dex)), dex, rotation=45)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("marginal bound [dex; km/s for vmic]")
    axes[1].legend(fontsize=7, ncol=2, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the lines, not on them
    return _finish(fig, path, title)


# the label step each gradient spectrum is drawn for: a change a survey would care about
GRADIENT_STEPS = {"teff": 100.0, "vmic": 0.1}
GRADIENT_STEP_DEFAULT = 0.1  # dex, for log g, [Fe/H] and every [X/Fe]


def strongest_lines(element: str, lo: float, hi: float, *, teff: float = 5772.0, n: int = 12) -> np.ndarray:
    """Vacuum wavelengths of the ``n`` strongest lines of ``element`` (all its ions) in [lo, hi] Å of the
    synthesizer's line list, ranked by log gf − θ χ (θ = 5040/T_eff, χ the lower level's energy in eV), sorted."""
    from .labels import atomic_number
    from .synth.data import linelist

    ll = linelist()
    sel = (ll.Z == atomic_number(element)) & (ll.wavelength >= lo) & (ll.wavelength <= hi)
    strength = ll.loggf[sel] - 5040.0 / teff * ll.elow[sel]
    keep = np.argsort(strength)[::-1][:n]
    return np.sort(ll.wavelength[sel][keep])


def plot_gradient_spectra(fc, labels: Sequence[str] | None = None, *, path=None, title: str = "", n_lines: int = 12):
    """Gradient spectra, Chem-I-Calc's standard view of where a label's information lives: the model's flux change
    for a step in each label (``GRADIENT_STEPS``: 100 K, 0.1 km/s, else 0.1 dex), one row per label, one column per
    arm of the forecast ``fc`` (:class:`stellarinf.forecast.Forecast`, from its stored Jacobian), with the
    ``n_lines`` strongest lines of each [X/Fe] label's element (and Fe for [Fe/H]) marked, shifted by the forecast's
    RV. Returns the figure; ``fig.marked_lines`` holds {label: [observed Å, ...]}."""
    from .labels import element_of
    from .wavelength import SPEED_OF_LIGHT_KMS

    plt = _plt()
    space = fc.spectrum_model.label_space.names
    labels = [n for n in (labels or space) if n in fc.param_names]
    slices = fc.arm_slices or (slice(0, fc.wavelength.size),)
    shift = 1.0 + fc.params.get("rv", 0.0) / SPEED_OF_LIGHT_KMS
    fig, axes = plt.subplots(
        len(labels),
        len(slices),
        figsize=(3.6 * len(slices) + 1.0, 1.25 * len(labels) + 1.0),
        sharex="col",
        squeeze=False,
    )
    marked = {}
    for i, name in enumerate(labels):
        step = GRADIENT_STEPS.get(name, GRADIENT_STEP_DEFAULT)
        column = fc.full_jacobian[:, fc.param_names.index(name)] * step
        element = "Fe" if name == "feh" else element_of(name)
        marked[name] = []
        for j, sl in enumerate(slices):
            ax, wl = axes[i, j], fc.wavelength[sl]
            ax.plot(wl, column[sl], lw=0.6, color="C0")
            ax.axhline(0.0, color="0.6", lw=0.4)
            if element is not None:
                lines = strongest_lines(element, wl.min() / shift, wl.max() / shift, n=n_lines) * shift
                for w in lines:
                    ax.axvline(w, color="C3", lw=0.5, alpha=0.6)
                marked[name] += [float(w) for w in lines]
            if j == 0:
                ax.set_ylabel(f"Δflux\n{name} +{step:g}", fontsize=7)
            if i == len(labels) - 1:
                ax.set_xlabel("wavelength [Å, vacuum]")
            ax.tick_params(labelsize=7)
    fig = _finish(fig, path, title or "gradient spectra (red: the element's strongest lines)")
    fig.marked_lines = marked
    return fig
