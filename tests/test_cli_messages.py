"""Every CLI option that a message recommends must exist (issue #23: `--assume-snr`, `--wmin` for grid, Python
keywords given to CLI users). Walks the source of stellarinf/ for ``--flag`` inside messages: raised errors,
warnings, notes, printed lines and message-building functions."""

import ast
import re
from pathlib import Path

import click
import pytest

import stellarinf
from stellarinf.cli import COMMANDS, cli

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
MESSAGE_CALLS = {"warn", "_note", "echo", "secho", "fail"}
SOURCE = Path(stellarinf.__file__).parent
# flags of other programs that messages recommend: flag -> (script, relative to the repository root)
OTHER_PROGRAMS = {
    "--steps": "data/make_defaults.py",
    "--only": "data/build_tables.py",
}


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _constants(node):
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            yield n


def message_flags(tree):
    """(line, flag) for each --flag in a message: raise statements, exception/warning/print calls, and what
    functions named *warning*/*message* return."""
    seen = {}  # each string once, however many message nodes hold it
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            parts = [node.exc]
        elif isinstance(node, ast.Call) and (
            _name(node.func) in MESSAGE_CALLS
            or re.search(r"(Error|Exception|BadInput|BadParameter)$", _name(node.func))
        ):
            parts = node.args + [k.value for k in node.keywords]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.search(r"(warning|message)", node.name):
            parts = [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
        else:
            continue
        for part in parts:
            for const in _constants(part):
                seen[id(const)] = const
    for const in seen.values():
        for flag in FLAG.findall(const.value):
            yield const.lineno, flag


def cli_options() -> dict[str, set[str]]:
    ctx = click.Context(cli)
    out = {}
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        opts = set()
        for p in cmd.get_params(click.Context(cmd)):
            if isinstance(p, click.Option):
                opts.update(p.opts)
                opts.update(p.secondary_opts)
        out[name] = opts
    return out


def test_the_walker_finds_flags_in_messages():
    tree = ast.parse(
        "def f():\n    raise SpectrumError(f'bad {x}; pass --medium air')\n"
        "def g():\n    warnings.warn('use --snr 10', W)\n"
        "def rv_warning():\n    return 'refit with --fit-resolution'\n"
        "HELP = 'not a message --nope'\n"
    )
    assert sorted(f for _, f in message_flags(tree)) == ["--fit-resolution", "--medium", "--snr"]


def test_every_flag_a_message_recommends_exists_in_the_cli():
    options = cli_options()
    every = set().union(*options.values())
    assert {"--medium", "--wavelength-unit", "--wavelength-col", "--flux-col", "--error-col", "--snr"} <= options[
        "inspect"
    ]
    for flag, script in OTHER_PROGRAMS.items():  # the exceptions must be real too
        assert f'"{flag}"' in (SOURCE.parent / script).read_text(encoding="utf-8"), (flag, script)
    missing = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, flag in message_flags(tree):
            if flag not in every and flag not in OTHER_PROGRAMS:
                missing.append(f"{path.relative_to(SOURCE)}:{line}: {flag}")
    assert not missing, "messages recommend CLI options that no command has:\n" + "\n".join(missing)


COMMAND_MODULES = [
    ("inspect", "inspect"),
    ("crb", "crb"),
    ("grid", "grid"),
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("synth", "synth"),
    ("bench", "bench"),
    ("fit", "fit"),
    ("fit_catalog", "fit-catalog"),
    ("demo", "demo"),
    ("joint", "fit"),  # `stellarinf fit --joint`: its messages are read by a user of fit's options
    ("fidelity", "fidelity"),
    ("error_model", "error-model"),
    ("systematics", "systematics"),
]


def test_every_command_module_is_checked_against_its_own_options():
    modules = {target.split(":")[0].rsplit(".", 1)[1] for target, _ in COMMANDS.values()}
    modules |= {p.stem for p in (SOURCE / "commands").glob("*.py")} - {"__init__", "options"}  # options: shared
    assert not modules - {m for m, _ in COMMAND_MODULES}


@pytest.mark.parametrize("module, command", COMMAND_MODULES)
def test_a_command_module_recommends_only_its_own_options(module, command):
    options = cli_options()[command]
    tree = ast.parse((SOURCE / "commands" / f"{module}.py").read_text(encoding="utf-8"))
    # another program's flag (demo: `data/make_defaults.py --steps demo`) is not the command's to have
    wrong = sorted({flag for _, flag in message_flags(tree) if flag not in options and flag not in OTHER_PROGRAMS})
    assert not wrong, f"commands/{module}.py recommends options `{command}` does not have: {wrong}"
