"""``stellarinf bench``: run one benchmark script of the repository's ``benchmarks/`` folder.

Each benchmark is a standalone script (``python benchmarks/<script>.py --help``) that writes
machine-readable results to ``benchmarks/results/<name>.json`` and plots beside them. This command
finds the folder beside the installed package (editable install from a clone), runs the script with the
current interpreter in a subprocess, and passes ``--quick``, ``--emulator`` and the output location on.
Anything after ``--`` goes to the script unchanged::

    stellarinf bench throughput --quick
    stellarinf bench accuracy --quick                      # results in benchmarks/results/quick/
    stellarinf bench accuracy --quick --output-dir /tmp/bench
    stellarinf bench accuracy -- --grid work/grid_realistic.h5 --test-grid work/grid_test.h5 --max-minutes 20

Script conventions (see ``benchmarks/README.md``): ``--quick``; ``-o/--output PATH.json`` (``--out`` and
``--output-dir DIR`` are understood too); optional ``--emulator NAME``. A script that lacks an option
this command was asked to pass gives a clear error instead of being run without it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

from ..errors import StellarinfError

# subcommand -> (script names or glob patterns inside benchmarks/, default result stem)
BENCHMARKS: dict[str, tuple[tuple[str, ...], str]] = {
    "accuracy": (("accuracy.py",), "accuracy"),
    "pretrain": (("pretrain.py",), "pretrain"),
    "throughput": (("throughput.py",), "throughput"),
    "inference": (("inference*.py",), "inference"),
    "synth": (("synth_speed.py",), "synth_speed"),
    "sun": (("sun_validation.py",), "sun_validation"),
    "crb": (("crb_validation.py",), "crb_validation"),
    "calibration": (("calibration.py",), "calibration"),
    "comparison": (("emulator_comparison.py",), "emulator_comparison"),
}


def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` folder (``STELLARINF_BENCHMARKS`` overrides); clear error if absent."""
    env = os.environ.get("STELLARINF_BENCHMARKS")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "benchmarks"
    if not path.is_dir():
        raise StellarinfError(
            f"benchmarks folder not found at {path}; the benchmarks live in the stellarinf repository, so install "
            "from a clone with `pip install -e .` (or set STELLARINF_BENCHMARKS to the clone's benchmarks/ folder)"
        )
    return path


def find_scripts(name: str, folder: Path) -> list[Path]:
    """Scripts of benchmark ``name`` in ``folder`` (sorted); clear error if there are none."""
    patterns, _ = BENCHMARKS[name]
    scripts = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file() and not p.name.startswith("_")})
    if not scripts:
        raise StellarinfError(
            f"benchmark {name!r} has no script in {folder} (looked for {', '.join(patterns)}); "
            "update your clone of the repository or choose another benchmark"
        )
    return scripts


def _accepts(script: Path, option: str) -> bool:
    """Whether the script declares a command-line option (its argparse/click source names it)."""
    text = script.read_text(encoding="utf-8", errors="replace")
    return re.search(r"""["']""" + re.escape(option) + r"""["']""", text) is not None


def script_command(
    script: Path, *, quick: bool, emulator: str | None, output_dir: Path | None, extra: tuple[str, ...] = ()
) -> list[str]:
    """The command line that runs ``script`` with the current interpreter."""
    cmd = [sys.executable, str(script)]
    if quick:
        if not _accepts(script, "--quick"):
            raise StellarinfError(f"{script.name} has no --quick variant; run it without --quick")
        cmd.append("--quick")
    if emulator is not None:
        if not _accepts(script, "--emulator"):
            raise StellarinfError(
                f"{script.name} does not take --emulator; see `python {script} --help` for how it chooses models "
                "and pass its own options after `--`"
            )
        cmd += ["--emulator", emulator]
    if output_dir is not None:
        if _accepts(script, "--output-dir"):
            cmd += ["--output-dir", str(output_dir)]
        elif _accepts(script, "--output"):
            cmd += ["--output", str(output_dir / f"{script.stem}.json")]
        elif _accepts(script, "--out"):
            cmd += ["--out", str(output_dir / f"{script.stem}.json")]
        else:
            raise StellarinfError(f"{script.name} does not take an output location; run it without --output-dir")
    return cmd + list(extra)


QUICK_RESULTS = Path("results") / "quick"
_OUTPUT_ARGS = ("-o", "--output", "--out", "--output-dir")


def default_output_dir(folder: Path, *, quick: bool, output_dir: Path | None, script_args=()) -> Path | None:
    """Where results go: ``--output-dir`` if given; for ``--quick`` runs ``benchmarks/results/quick/`` unless the script
    is given its own output after ``--``, so that toy numbers never overwrite the shipped results; else the script's
    default (``benchmarks/results/``)."""
    if output_dir is not None or not quick:
        return output_dir
    if any(a in _OUTPUT_ARGS or a.startswith(tuple(o + "=" for o in _OUTPUT_ARGS)) for a in script_args):
        return None
    return folder / QUICK_RESULTS


class ScriptFailed(click.ClickException):
    """A benchmark script failed; the command exits with the script's own exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code if exit_code > 0 else 1


@click.command(name="bench")
@click.argument("benchmark", type=click.Choice(list(BENCHMARKS)))
@click.option("--quick", is_flag=True, help="The minutes-long variant (small sizes); what the tests run.")
@click.option("--emulator", default=None, help="Emulator name or model directory, for benchmarks that take one.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write results here instead of benchmarks/results/ (--quick: benchmarks/results/quick/).",
)
@click.option("--dry-run", is_flag=True, help="Print the command that would run, and stop.")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def bench(benchmark, quick, emulator, output_dir, dry_run, script_args):
    """Run a benchmark: accuracy | pretrain | throughput | inference | synth | sun | crb | calibration | comparison.

    Options after `--` go to the benchmark script itself (`python benchmarks/<script>.py --help` lists them).
    """
    folder = benchmarks_dir()
    scripts = find_scripts(benchmark, folder)
    output_dir = default_output_dir(folder, quick=quick, output_dir=output_dir, script_args=script_args)
    if output_dir is not None:
        output_dir = output_dir.resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
    commands = [
        script_command(s, quick=quick, emulator=emulator, output_dir=output_dir, extra=script_args) for s in scripts
    ]
    for cmd in commands:
        click.echo("$ " + " ".join(_quote(c) for c in cmd), err=True)
        if dry_run:
            continue
        env = dict(os.environ)
        env.setdefault("MPLBACKEND", "Agg")
        rc = subprocess.call(cmd, cwd=str(folder.parent), env=env)
        if rc != 0:
            raise ScriptFailed(
                f"benchmark script {Path(cmd[1]).name} failed with exit code {rc} (its output is above)", rc
            )


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
