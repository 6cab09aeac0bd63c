"""The one table of network kinds (stellarinf/emulators/kinds.py): every kind builds, is recognised, round-trips
through its architecture document and is offered by ``stellarinf train``; nothing outside the table asks which class
a network is."""

import ast
from pathlib import Path

import jax
import pytest
from toy_grid import make_toy_grid

from stellarinf.emulators import TrainConfig
from stellarinf.emulators.kinds import NETWORK_KINDS, get_kind, kind_of, preset_names
from stellarinf.emulators.model_io import architecture_of, network_from_architecture
from stellarinf.emulators.training import new_network
from stellarinf.errors import StellarinfError

PACKAGE = Path(__file__).resolve().parent.parent / "stellarinf"
GRID = make_toy_grid(n=8, n_pix=40, seed=1)


@pytest.mark.parametrize("name", list(NETWORK_KINDS))
def test_every_kind_builds_is_recognised_and_round_trips(name):
    kind = get_kind(name)
    cfg = TrainConfig(model=name, preset="tiny", hidden=(8,)).resolved()
    assert cfg.learning_rate == kind.learning_rate and cfg.batch_spectra == kind.batch_spectra
    net = new_network(cfg, GRID, jax.random.key(0))
    assert isinstance(net, kind.network_class) and kind_of(net) is kind
    arch = architecture_of(net)
    assert arch["kind"] == name
    skeleton = network_from_architecture(arch, shapes_only=True)
    assert kind_of(skeleton) is kind and skeleton.config == net.config
    assert set(kind.freeze_groups) and kind.predicts_continuum == (kind.log10_continuum is not None)


def test_unknown_kinds_and_networks_name_the_known_ones():
    with pytest.raises(StellarinfError, match="unknown emulator kind 'cannon'.*transformer-payne"):
        get_kind("cannon")
    with pytest.raises(StellarinfError, match="unsupported network type object"):
        kind_of(object())


def test_train_cli_offers_the_table():
    from stellarinf.commands.train import train

    params = {p.name: p for p in train.params}
    assert list(params["model"].type.choices) == list(NETWORK_KINDS)
    assert list(params["preset"].type.choices) == list(preset_names()) == ["tiny", "small", "paper"]


def _network_class_checks(path: Path) -> list[str]:
    """``isinstance(x, <network class>)`` calls and comparisons with a kind's name string in ``path``."""
    classes = {kind.network_class.__name__ for kind in NETWORK_KINDS.values()}
    names = set(NETWORK_KINDS)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            target = node.args[1]
            elts = target.elts if isinstance(target, ast.Tuple) else [target]
            if any(getattr(e, "id", getattr(e, "attr", None)) in classes for e in elts):
                found.append(f"{path.name}:{node.lineno} isinstance")
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Constant) and side.value in names:
                    found.append(f"{path.name}:{node.lineno} == {side.value!r}")
    return found


def test_no_isinstance_chains_on_network_classes_in_emulators():
    """The kind decides through the table: no module of emulators/ besides kinds.py tests a network's class or
    compares a kind's name."""
    found = [
        hit
        for path in sorted((PACKAGE / "emulators").glob("*.py"))
        if path.name != "kinds.py"
        for hit in _network_class_checks(path)
    ]
    assert not found, found
