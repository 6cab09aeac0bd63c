"""The scripted newcomer run (benchmarks/newcomer.py, issue 23 "Must show"): its pieces on fake commands (the
full run takes ~15 min of CPU and a package index; the session lead runs it)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def newcomer():
    spec = importlib.util.spec_from_file_location("newcomer", REPO / "benchmarks" / "newcomer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_command_1_is_the_install_and_demo_line(newcomer):
    cmd = newcomer.readme_command_1((REPO / "README.md").read_text())
    assert "pip install -e ." in cmd and cmd.endswith("stellarinf demo") and "[test]" not in cmd
    names = [name for name, _ in newcomer.steps()]
    assert names == [
        "readme_command_1",
        "fit_demo_star_defaults",
        "synth_star",
        "make_headerless_csv",
        "fit_headerless_csv_defaults",
    ]
    fits = dict(newcomer.steps())
    assert "--sampler" not in fits["fit_demo_star_defaults"] and "--emulator" not in fits["fit_headerless_csv_defaults"]


def test_run_step_times_the_first_output_the_silence_and_the_total(newcomer, tmp_path):
    py = sys.executable
    fake = f"{py} -c \"import time,sys; time.sleep(0.6); print('hello', flush=True); time.sleep(0.4); print('bye')\""
    rec = newcomer.run_step("fake", fake, tmp_path)
    assert rec["exit_code"] == 0 and not rec["timed_out"] and rec["first_line"] == "hello"
    assert 0.5 <= rec["time_to_first_output_s"] < 3.0
    assert rec["total_s"] >= 1.0 and rec["longest_silence_s"] >= 0.35 and rec["last_lines"] == ["hello", "bye"]
    # a progress bar (carriage returns, no newline) counts as output; a failure is recorded, not raised
    bar = f"{py} -c \"import sys,time; sys.stderr.write('\\r 10%'); sys.stderr.flush(); time.sleep(0.3); sys.exit(4)\""
    rec = newcomer.run_step("bar", bar, tmp_path)
    assert rec["exit_code"] == 4 and rec["time_to_first_output_s"] < 0.3 and rec["first_line"] == " 10%"
    rec = newcomer.run_step("silent", "sleep 5", tmp_path, timeout_s=0.5)
    assert rec["timed_out"] and rec["time_to_first_output_s"] is None and rec["total_s"] < 3


def test_results_json_and_readme_line(newcomer, tmp_path):
    doc = {
        "date": "2026-11-30T17:00:00+00:00",
        "machine": "x86_64, 2 cores, Linux",
        "commit": "0123456789abcdef",
        "steps": [
            {
                "step": "readme_command_1",
                "time_to_first_output_s": 1.2,
                "total_s": 301.0,
                "exit_code": 0,
                "timed_out": False,
            },
            {
                "step": "fit_demo_star_defaults",
                "time_to_first_output_s": None,
                "total_s": 9.0,
                "exit_code": 4,
                "timed_out": False,
            },
        ],
    }
    newcomer.write_json_atomic(tmp_path / "r" / "newcomer.json", doc)
    assert json.loads((tmp_path / "r" / "newcomer.json").read_text()) == doc
    line = newcomer.summary_line(doc)
    assert line.startswith("- 2026-11-30T17:00:00+00:00 (x86_64, 2 cores, Linux, commit 0123456789)")
    assert (
        "readme_command_1: first output 1.2 s, total 301 s;" in line and "first output none, total 9 s, exit 4" in line
    )
    readme = tmp_path / "README.md"
    readme.write_text("# benchmarks\n")
    newcomer.add_readme_line(readme, "- first")
    newcomer.add_readme_line(readme, "- second")
    text = readme.read_text()
    assert text.count(newcomer.MARKER) == 1 and text.index("- second") < text.index("- first")
    assert newcomer.MARKER in (REPO / "benchmarks" / "README.md").read_text()  # the shipped README has the section


def test_make_csv_writes_three_unlabelled_columns(newcomer, tmp_path):
    from astropy.table import Table

    wl = np.linspace(6500.0, 6510.0, 100)
    Table({"wavelength": wl, "flux": np.ones(100), "continuum": np.ones(100)}).write(tmp_path / "s.fits")
    newcomer.make_csv(str(tmp_path / "s.fits"), str(tmp_path / "s.csv"))
    first = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert len(first.split(",")) == 3 and first.split(",")[0].startswith("6500.0")
    data = np.loadtxt(tmp_path / "s.csv", delimiter=",")
    assert data.shape == (100, 3) and np.allclose(data[:, 2], 0.01) and 0.005 < np.std(data[:, 1]) < 0.015
