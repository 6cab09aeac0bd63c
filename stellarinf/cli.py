"""The ``stellarinf`` command line.

Subcommands live in :mod:`stellarinf.commands` (one module each) and are imported only when used,
so ``stellarinf --help`` is fast. Exit codes: 0 success, 2 usage error, 3 bad input (a message names
the problem and the fix), 4 ``fit``: the result is flagged unreliable (the files are written, the message
says what to do next; ``--allow-unreliable`` exits 0), 1 anything unexpected (a bug: please report it).
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from .errors import StellarinfError

EXIT_BAD_INPUT = 3

# name -> (module:function, one-line help shown by `stellarinf --help`)
COMMANDS = {
    "demo": ("stellarinf.commands.demo:demo", "Fit the shipped demo spectrum end to end (MAP → NUTS)."),
    "fit": ("stellarinf.commands.fit:fit", "Infer labels of observed spectra (posterior, MAP or Laplace)."),
    "fit-catalog": (
        "stellarinf.commands.fit_catalog:fit_catalog",
        "Fit a catalogue of spectra on a Dask cluster (restartable) into one results table.",
    ),
    "inspect": ("stellarinf.commands.inspect:inspect", "Read a spectrum as fit would; say what was read and assumed."),
    "crb": ("stellarinf.commands.crb:crb", "Cramér–Rao precision forecast for a star and an instrument."),
    "synth": ("stellarinf.commands.synth:synth", "Synthesise one spectrum with the 1D LTE synthesizer."),
    "grid": ("stellarinf.commands.grid:grid", "Make a grid of synthetic spectra (resumable HDF5)."),
    "train": ("stellarinf.commands.train:train", "Train a TransformerPayne or Payne MLP emulator on a grid."),
    "evaluate": ("stellarinf.commands.evaluate:evaluate", "Accuracy of an emulator on a grid file."),
    "error-model": (
        "stellarinf.commands.error_model:error_model",
        "Fit an emulator's correlated error model on a held-out grid.",
    ),
    "fidelity": (
        "stellarinf.commands.fidelity:fidelity",
        "Measure an emulator's Cramér–Rao bounds against the synthesizer's; store the ratio with the model.",
    ),
    "systematics": (
        "stellarinf.commands.systematics:systematics",
        "Measure an emulator's label-space systematics across the box; store them with the model.",
    ),
    "bench": (
        "stellarinf.commands.bench:bench",
        "Run the benchmark suite (accuracy, pretrain, throughput, inference).",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, short = COMMANDS[name]
        module_name, func_name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise

            @click.command(name=name, help=f"{short} (not available in this version)")
            def _missing():
                raise click.ClickException(f"'{name}' is not implemented in this version of stellarinf")

            return _missing
        cmd = getattr(module, func_name)
        cmd.short_help = cmd.short_help or short
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stellarinf")
def cli():
    """stellarinf: Bayesian stellar spectroscopy with a differentiable TransformerPayne emulator.

    \b
    Typical use:
      stellarinf demo                          fit the shipped demo star
      stellarinf fit spec.fits -o star         posterior for an observed spectrum
      stellarinf fit-catalog spectra/ -o cat   a survey's catalogue on a Dask cluster
      stellarinf crb --teff 5772 --logg 4.44 --feh 0 --snr 100 -o crb.json
    """
    from . import enable_compilation_cache, enable_float64

    enable_float64()  # every command computes atmospheres, likelihoods or Fisher matrices in float64
    enable_compilation_cache()  # a grid's tiers, a fit's programs: loaded by the next run instead of compiled again
    warnings.showwarning = show_warning  # a user reads "warning: what and how to fix it", not our source code


def show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as the CLI prints them: one ``warning: ...`` line on stderr, without the file, line number and
    source line of the ``warnings.warn`` call (Python's default format, meant for developers)."""
    click.secho(f"warning: {message}", fg="yellow", err=True)


def main(argv=None):
    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StellarinfError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(0)


if __name__ == "__main__":
    main()
