"""Accuracy metrics of emulated normalised flux: MAE, MSE, 99th-percentile absolute error, and the
split into line cores vs continuum pixels (by the true flux depth).

Used by ``stellarinf evaluate``, the training loop (held-out metrics, emulator-error table) and the
benchmarks. Everything streams over batches of spectra, so grids larger than memory are fine.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..errors import GridFileError, WavelengthError
from ..io.grid import GridFile, SpectralGrid

# A pixel is "line" if its true normalised flux is below this (depth > 10 %), otherwise "continuum".
LINE_THRESHOLD = 0.9
# p99 is exact up to this many residuals; beyond, it comes from a fine log-spaced histogram (±0.5 %).
_EXACT_P99_LIMIT = 20_000_000
_HIST_EDGES = np.concatenate([[0.0], np.logspace(-8, 1, 3601)])


class MetricAccumulator:
    """Streams (pred, true) batches of shape (B, n_pix) into overall and per-pixel statistics."""

    def __init__(self, n_pix: int, line_threshold: float = LINE_THRESHOLD):
        self.line_threshold = line_threshold
        self.n_spectra = 0
        self.sum_abs = self.sum_sq = 0.0
        self.count = 0
        self.line = [0.0, 0.0, 0]  # sum_abs, sum_sq, count
        self.cont = [0.0, 0.0, 0]
        self.pixel_sum_sq = np.zeros(n_pix)
        self.pixel_sum = np.zeros(n_pix)
        self.pixel_sum_abs = np.zeros(n_pix)
        self._abs_chunks: list[np.ndarray] | None = []
        self._hist = np.zeros(len(_HIST_EDGES) - 1, dtype=np.int64)

    def update(self, pred, true) -> None:
        pred = np.asarray(pred, dtype=np.float64)
        true = np.asarray(true, dtype=np.float64)
        if pred.shape != true.shape or pred.ndim != 2:
            raise ValueError(f"prediction {pred.shape} and truth {true.shape} must both be (B, n_pix)")
        res = pred - true
        a = np.abs(res)
        self.n_spectra += res.shape[0]
        self.sum_abs += a.sum()
        self.sum_sq += np.square(res).sum()
        self.count += a.size
        is_line = true < self.line_threshold
        for acc, mask in ((self.line, is_line), (self.cont, ~is_line)):
            acc[0] += a[mask].sum()
            acc[1] += np.square(res[mask]).sum()
            acc[2] += int(mask.sum())
        self.pixel_sum_sq += np.square(res).sum(axis=0)
        self.pixel_sum += res.sum(axis=0)
        self.pixel_sum_abs += a.sum(axis=0)
        self._hist += np.histogram(np.clip(a, 0, _HIST_EDGES[-1]), bins=_HIST_EDGES)[0]
        if self._abs_chunks is not None:
            self._abs_chunks.append(a.astype(np.float32).ravel())
            if sum(c.size for c in self._abs_chunks) > _EXACT_P99_LIMIT:
                self._abs_chunks = None  # too many to keep: fall back to the histogram

    def p99(self) -> float:
        if self._abs_chunks is not None:
            return float(np.percentile(np.concatenate(self._abs_chunks), 99)) if self._abs_chunks else float("nan")
        cum = np.cumsum(self._hist) / max(self._hist.sum(), 1)
        i = int(np.searchsorted(cum, 0.99))
        return float(_HIST_EDGES[i + 1])

    def result(self) -> dict:
        """``mae``, ``mse``, ``p99``, ``n_spectra``, ``n_pixels`` and line/continuum MAE and MSE."""
        n = max(self.count, 1)
        out = {
            "mae": self.sum_abs / n,
            "mse": self.sum_sq / n,
            "p99": self.p99(),
            "n_spectra": int(self.n_spectra),
            "n_pixels": int(self.count // max(self.n_spectra, 1)),
            "line_threshold": self.line_threshold,
        }
        for name, (sa, ss, c) in (("line", self.line), ("continuum", self.cont)):
            out[f"mae_{name}"] = sa / c if c else None
            out[f"mse_{name}"] = ss / c if c else None
            out[f"n_{name}_pixels"] = int(c)
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}

    def pixel_rms(self) -> np.ndarray:
        """Root-mean-square residual per pixel over all spectra seen."""
        return np.sqrt(self.pixel_sum_sq / max(self.n_spectra, 1))

    def pixel_mae(self) -> np.ndarray:
        """Mean absolute residual per pixel over all spectra seen."""
        return self.pixel_sum_abs / max(self.n_spectra, 1)


def between_pixel_metrics(acc: MetricAccumulator, oversample: int) -> dict:
    """MAE and rms at the instrument's pixels (every ``oversample``-th column of an oversampled grid) and between
    them (the other columns: half-pixel points for ``oversample`` 2), and their ratio: how well an emulator answers
    wavelengths it was not trained at. Empty for a grid at the instrument's pixels only."""
    k = int(oversample)
    if k < 2:
        return {}
    mae, ms = acc.pixel_mae(), acc.pixel_sum_sq / max(acc.n_spectra, 1)
    on = np.zeros(mae.size, dtype=bool)
    on[::k] = True
    out = {
        "mae_on_pixels": float(mae[on].mean()),
        "mae_between_pixels": float(mae[~on].mean()),
        "rms_on_pixels": float(np.sqrt(ms[on].mean())),
        "rms_between_pixels": float(np.sqrt(ms[~on].mean())),
    }
    out["between_pixel_ratio"] = out["mae_between_pixels"] / max(out["mae_on_pixels"], 1e-30)
    return out


def flux_metrics(pred, true, line_threshold: float = LINE_THRESHOLD) -> dict:
    """Metrics of predicted vs true normalised flux, both (B, n_pix) (or (n_pix,))."""
    pred, true = np.atleast_2d(pred), np.atleast_2d(true)
    acc = MetricAccumulator(true.shape[1], line_threshold)
    acc.update(pred, true)
    return acc.result()


def error_table(wavelength, pixel_rms, max_bins: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Bin per-pixel rms residuals into at most ``max_bins`` groups of consecutive pixels.

    Returns (bin-centre wavelengths, rms per bin); rms is combined in quadrature (mean of squares).
    """
    wl = np.asarray(wavelength, dtype=np.float64)
    rms = np.asarray(pixel_rms, dtype=np.float64)
    if wl.size <= max_bins:
        return wl.copy(), rms.copy()
    groups = np.array_split(np.arange(wl.size), max_bins)
    centres = np.array([wl[g].mean() for g in groups])
    values = np.array([np.sqrt(np.mean(np.square(rms[g]))) for g in groups])
    return centres, values


def evaluate_emulator(
    emulator,
    grid,
    *,
    batch_size: int = 16,
    max_spectra: int | None = None,
    index=None,
    progress: bool = False,
    line_threshold: float = LINE_THRESHOLD,
):
    """Compare ``emulator`` with the spectra of ``grid`` (a :class:`SpectralGrid` or a grid file path).

    Labels are validated against the emulator's training box and the grid's wavelengths against its
    range (clear errors otherwise). ``index`` selects rows; ``max_spectra`` caps how many are used.
    Returns the :class:`MetricAccumulator` (``.result()`` for the metrics, ``.pixel_rms()`` per pixel)
    and the grid wavelength.
    """
    if isinstance(grid, SpectralGrid):
        wl = grid.wavelength
        rows = np.arange(len(grid)) if index is None else np.asarray(index)
        rows = rows[:max_spectra] if max_spectra else rows
        read = lambda r: (grid.labels[r], grid.flux[r])  # noqa: E731
        return _evaluate(emulator, wl, rows, read, batch_size, progress, line_threshold), wl
    with GridFile(grid) as gf:
        wl = gf.wavelength
        rows = np.arange(len(gf)) if index is None else np.sort(np.asarray(index))
        rows = rows[:max_spectra] if max_spectra else rows
        read = lambda r: gf.read_rows(r)[:2]  # noqa: E731
        return _evaluate(emulator, wl, rows, read, batch_size, progress, line_threshold), wl


def _check_finite_rows(rows, labels, flux) -> None:
    """Refuse NaN/inf in grid rows: one such row turns every metric into NaN (a corrupt or unfinished file)."""
    bad = ~np.all(np.isfinite(np.asarray(flux, dtype=np.float64)), axis=1) | ~np.all(
        np.isfinite(np.asarray(labels, dtype=np.float64)), axis=1
    )
    if np.any(bad):
        which = [int(r) for r in np.asarray(rows)[bad]]
        raise GridFileError(
            f"grid row(s) {which[:10]}{' ...' if len(which) > 10 else ''} hold NaN/inf labels or flux: the file is corrupt or "
            "was not finished. Regenerate it (rerunning `stellarinf grid` with the same arguments resumes an unfinished grid)"
        )


def _evaluate(emulator, wl, rows, read, batch_size, progress, line_threshold):
    wmin, wmax = emulator.wavelength_range
    if wl.min() < wmin - 1e-6 or wl.max() > wmax + 1e-6:
        raise WavelengthError(
            f"the grid covers {wl.min():.2f}–{wl.max():.2f} Å but the emulator answers only {wmin:.2f}–{wmax:.2f} Å; "
            "evaluate on a grid of the emulator's window"
        )
    acc = MetricAccumulator(wl.size, line_threshold)
    with tqdm(total=len(rows), desc="evaluate", unit="spec", disable=not progress, leave=False) as bar:
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start : start + batch_size]
            labels, flux = read(batch_rows)
            _check_finite_rows(batch_rows, labels, flux)
            acc.update(emulator.predict(labels, wl, batch_size=batch_size), flux)
            bar.update(len(labels))
    return acc
