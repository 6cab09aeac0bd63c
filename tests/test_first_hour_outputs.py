"""Issue #23, what a new user reads: the corner plot (units, a legend for the truth, readable ticks, no empty band),
the summary (sd_sys explained, footer flags = the labels' flags), warnings without our source code, no ArviZ
FutureWarning, and a plain headerless CSV read by position."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from test_inference_cli import injected, model, spectrum_file  # noqa: F401  (fixtures)
from test_inference_results import TRUTH, fake_posterior, make_problem

from stellarinf.errors import SpectrumError
from stellarinf.inference.plots import plot_corner
from stellarinf.inference.results import format_summary, summary_table, to_inference_data
from stellarinf.io.spectrum import read_spectrum

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def idata():
    problem = make_problem()
    return to_inference_data(fake_posterior(problem), problem, n_predictive=5)


def test_corner_plot_has_units_a_truth_legend_readable_ticks_and_no_empty_band(idata):
    import matplotlib.pyplot as plt

    fig = plot_corner(idata, truth=TRUTH)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    xlabels = {ax.get_xlabel() for ax in axes} - {""}
    ylabels = {ax.get_ylabel() for ax in axes} - {""}
    assert xlabels == {"teff [K]", "logg [dex]", "feh [dex]"}
    assert ylabels == {"logg [dex]", "feh [dex]"}
    legend_texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any("truth" in t for t in legend_texts) and any("posterior" in t for t in legend_texts)
    fig.canvas.draw()
    for ax in axes:
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_offset_text().get_text() == ""  # no "+5.5e3" offset to decode
            for label in axis.get_ticklabels():
                if label.get_text():
                    assert label.get_fontsize() >= 8
            assert len([t for t in axis.get_ticklabels() if t.get_text()]) <= 3
    # no empty band: the panels reach the top of the figure, just below the title
    top = max(ax.get_position().y1 for ax in axes)
    title_y = fig._suptitle.get_position()[1]
    assert top > 0.85 and title_y - top < 0.1
    assert min(ax.get_position().y0 for ax in axes) < 0.25
    plt.close(fig)
    fig = plot_corner(idata)  # without a truth the legend names the draws only
    assert not any("truth" in t.get_text() for leg in fig.legends for t in leg.get_texts())
    plt.close(fig)


def test_summary_footer_lists_the_labels_flags_and_explains_sd_sys(idata):
    table = summary_table(idata)
    table["flags"] = ["", "", "edge_high"]  # a per-label flag, no global flag
    table.meta["FLAGS"] = ""
    text = format_summary(table)
    footer = next(line for line in text.splitlines() if line.startswith("method="))
    assert "flags=edge_high(feh)" in footer and "flags=none" not in footer
    assert "sd_sys" not in text  # the column is absent: nothing to explain
    table.meta["FLAGS"] = "chi2"
    assert "flags=chi2,edge_high(feh)" in format_summary(table)
    table["sd_sys"] = [30.0, 0.02, 0.01]
    table["sd_total"] = np.hypot(table["sd"], table["sd_sys"])
    text = format_summary(table)
    assert "sd_sys: the systematic error" in text and "sd_total" in text.split("sd_sys: ")[1]
    clean = summary_table(idata)
    assert "flags=none" in format_summary(clean)


def _env(**extra):
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def test_cli_warnings_are_one_line_without_our_source_code(tmp_path):
    wl = np.linspace(6500.0, 6520.0, 200)
    np.savetxt(
        tmp_path / "s.csv",
        np.c_[wl, 1 - 0.3 * np.exp(-0.5 * ((wl - 6510) / 0.2) ** 2), np.full(200, 0.01)],
        delimiter=",",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stellarinf.cli",
            "fit",
            str(tmp_path / "s.csv"),
            "--emulator",
            str(tmp_path / "none"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 3, proc.stderr  # the model does not exist; reading (and its warnings) came first
    assert "warning: s.csv has no header line" in proc.stderr
    assert "warnings.warn" not in proc.stderr and ".py:" not in proc.stderr and "SpectrumWarning" not in proc.stderr


def test_no_arviz_future_warning_on_the_first_import_of_the_day(tmp_path):
    code = "import stellarinf.inference.results"
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        env=_env(XDG_CACHE_HOME=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "ArviZ is undergoing" not in proc.stderr and "FutureWarning" not in proc.stderr


def test_a_headerless_csv_is_read_by_position_and_says_so(tmp_path):
    wl = np.linspace(6500.0, 6520.0, 50)
    flux = 1 - 0.3 * np.exp(-0.5 * ((wl - 6510) / 0.2) ** 2)
    np.savetxt(tmp_path / "three.csv", np.c_[wl, flux, np.full(50, 0.02)], delimiter=",")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = read_spectrum(tmp_path / "three.csv")
    np.testing.assert_allclose(spec.sigma, 0.02)
    np.testing.assert_allclose(spec.flux, flux)
    assert any("no header line" in str(w.message) for w in caught)
    assert any("read by position as wavelength, flux, error" in n for n in spec.meta["notes"])
    np.savetxt(tmp_path / "two.csv", np.c_[wl, flux], delimiter=" ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_spectrum(tmp_path / "two.csv", default_snr=100).n_pix == 50
    np.savetxt(tmp_path / "four.csv", np.c_[wl, flux, flux, flux], delimiter=",")
    with pytest.raises(SpectrumError, match="no header line and 4 columns.*--wavelength-col col1"):
        read_spectrum(tmp_path / "four.csv")


def test_demo_output_is_git_ignored():
    assert "demo_output/" in (REPO / ".gitignore").read_text().split()
    assert subprocess.run(["git", "check-ignore", "-q", "demo_output/demo.nc"], cwd=REPO).returncode == 0


def test_default_fit_shows_a_progress_bar(request, tmp_path, capsys, monkeypatch):
    """Without --quiet the sampler's bar is on stderr (laplace-is: the default for TransformerPayne on a CPU)."""
    from test_inference_cli import COMMON, run

    from stellarinf import pipeline

    path, model_args = request.getfixturevalue("spectrum_file"), request.getfixturevalue("injected")
    monkeypatch.setattr(
        pipeline, "choose_sampler", lambda m, backend=None, n_free=None: ("laplace-is", "the CPU default")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, _, err = run(
            ["fit", str(path), *model_args, *COMMON, "--chains", "2", "--draws", "500", "-o", str(tmp_path / "s")],
            capsys,
        )  # the sizes of test_inference_cli's laplace-is fit: the same compiled programs serve both (cached)
    assert code in (0, 4), err
    assert "proposal" in err and "100%" in err  # tqdm: "laplace-is: 100%|...| 1000/1000 [.., proposal/s]"
    for stage in ("[1/6] reading", "[3/6] MAP", "[5/6] laplace-is"):
        assert stage in err


def test_corner_of_many_labels_shows_the_stellar_labels_and_nuisances():
    from stellarinf.inference.plots import CORNER_MAX, corner_names

    few = ["teff", "logg", "feh", "vmic", "li_fe", "rv", "vsini"]
    assert corner_names(few) == few  # up to CORNER_MAX: everything
    broad = ["teff", "logg", "feh", "vmic", "alpha_fe"] + [f"x{i}_fe" for i in range(30)] + ["rv", "vsini"]
    assert len(broad) > CORNER_MAX
    assert corner_names(broad) == ["teff", "logg", "feh", "vmic", "alpha_fe", "rv", "vsini"]


def test_fit_plot_gives_each_arm_its_own_column(idata):
    """A spectrum of two arms 1,000 Å apart: two columns (data and residuals), no line drawn across the gap."""
    import matplotlib.pyplot as plt

    from stellarinf.inference.plots import arm_slices, plot_fit

    wl = np.asarray(idata.constant_data["wavelength"])
    assert len(arm_slices(wl)) == 1 and plot_fit(idata).axes.__len__() == 2
    plt.close("all")
    two = idata.copy()  # deep: the fixture's arrays stay as they are
    half = wl.size // 2
    two.constant_data["wavelength"].values[half:] += 1000.0
    assert np.asarray(idata.constant_data["wavelength"])[-1] == wl[-1]
    arms = arm_slices(np.asarray(two.constant_data["wavelength"]))
    assert [(a.start, a.stop) for a in arms] == [(0, half), (half, wl.size)]
    # arms out of order (a redder arm first): each is still its own
    swapped = np.concatenate([wl[half:] + 1000.0, wl[:half]])
    assert [(a.start, a.stop) for a in arm_slices(swapped)] == [(0, wl.size - half), (wl.size - half, wl.size)]
    fig = plot_fit(two)
    assert len(fig.axes) == 4
    for ax in fig.axes:
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), float)
            if x.size > 2:  # data, model and residual traces (not the horizontal guides)
                assert x.max() - x.min() < 1000.0  # each trace stays within its arm
    plt.close(fig)
