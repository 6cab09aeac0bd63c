import subprocess
import sys

from click.testing import CliRunner

from stellarinf.cli import COMMANDS, cli


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("synth", "grid", "train", "evaluate", "fit", "crb", "demo", "bench"):
        assert name in result.output
    assert set(COMMANDS) >= {"synth", "grid", "train", "fit", "crb", "demo", "bench"}


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "stellarinf.cli", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "No such command" in proc.stderr
