"""The Payne MLP baseline (Ting et al. 2019) in Equinox.

Labels scaled to [−0.5, 0.5] → Linear → LeakyReLU(0.01) → Linear → LeakyReLU → Linear → one output
per pixel of the *training* wavelength grid. The network only knows those pixels: the
:class:`~.emulator.Emulator` answers other wavelengths by Lanczos interpolation between training pixels
(:mod:`.interpolation`), which cannot recover structure finer than the training sampling nor reach
outside the grid. This is one of the differences the benchmarks show against TransformerPayne.

LeakyReLU is the published activation; ``activation="silu"`` swaps in a smooth one. A LeakyReLU network is
piecewise linear in the labels: its gradient jumps wherever a hidden unit changes sign, and at high S/N a
posterior spans several such kinks, which breaks the Hessian of a Laplace approximation and makes
Hamiltonian Monte Carlo take tiny steps. The shipped ``default-payne`` therefore uses SiLU; the
benchmarks' baseline keeps LeakyReLU.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..errors import StellarinfError
from .transformer_payne import Dense, numpy_rng

KIND = "payne"
# leaky_relu: the published Payne (piecewise linear); silu / gelu: smooth, for gradient-based inference
ACTIVATIONS = ("leaky_relu", "silu", "gelu")


@dataclasses.dataclass(frozen=True)
class PayneConfig:
    """Hyper-parameters of the Payne MLP (JSON-serialisable, hashable)."""

    n_labels: int
    n_pixels: int
    hidden: tuple[int, ...] = (300, 300)
    negative_slope: float = 0.01
    activation: str = "leaky_relu"  # one of ACTIVATIONS

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.activation not in ACTIVATIONS:
            raise StellarinfError(
                f"Payne MLP: unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.n_labels < 1 or self.n_pixels < 2 or not self.hidden or min(self.hidden) < 1:
            raise StellarinfError(
                f"Payne MLP: invalid sizes n_labels={self.n_labels}, n_pixels={self.n_pixels}, hidden={self.hidden}"
            )

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, doc: dict) -> "PayneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(doc) - names
        if unknown:
            raise StellarinfError(
                f"unknown Payne hyper-parameters {sorted(unknown)}; the model file is from a newer stellarinf"
            )
        return cls(**{**doc, "hidden": tuple(doc.get("hidden", (300, 300)))})


class PayneMLP(eqx.Module):
    """``net(labels_scaled (n_labels,)) -> flux (n_pixels,)`` on the training wavelength grid."""

    layers: tuple[Dense, ...]
    config: PayneConfig = eqx.field(static=True)

    def __init__(self, config: PayneConfig, key: PRNGKeyArray, dtype=jnp.float32):
        rng = numpy_rng(key)
        sizes = (config.n_labels, *config.hidden, config.n_pixels)
        self.layers = tuple(Dense(a, b, rng, dtype) for a, b in zip(sizes[:-1], sizes[1:]))
        self.config = config

    @property
    def dtype(self):
        return self.layers[-1].weight.dtype

    def __call__(self, labels_scaled: Float[Array, "n_labels"], matmul_dtype=None) -> Float[Array, "n_pixels"]:
        """``matmul_dtype`` (training only): the layers' matrix products take their operands in that dtype and
        accumulate in the network's (:class:`~.transformer_payne.Dense`); None: all in the network's dtype."""
        x = jnp.asarray(labels_scaled).astype(self.dtype)
        for layer in self.layers[:-1]:
            x = self._activate(layer(x, matmul_dtype))
        return self.layers[-1](x, matmul_dtype)

    def _activate(self, x):
        if self.config.activation == "silu":
            return jax.nn.silu(x)
        if self.config.activation == "gelu":
            return jax.nn.gelu(x)
        return jax.nn.leaky_relu(x, negative_slope=self.config.negative_slope)


# ------------------------------------------------------------------------------------------------------------
# The hooks the network-kind table (emulators/kinds.py) reads: what differs from other kinds in evaluation and
# training. ``batch``/``data`` follow emulators/training.py.
# ------------------------------------------------------------------------------------------------------------
FREEZE_GROUPS = ("hidden", "output")


def flux(network: PayneMLP, labels_scaled, wavelength=None) -> Float[Array, "n_pixels"]:
    """Normalised flux at the training pixels (the network knows no others; ``wavelength`` is ignored)."""
    return network(labels_scaled)


def new_for_grid(cfg, grid, key) -> PayneMLP:
    """A fresh MLP (``cfg.hidden`` widths, ``cfg.activation``) for ``grid``; output biases start at the mean spectrum."""
    net = PayneMLP(PayneConfig(len(grid.label_space), grid.n_pixels, cfg.hidden, activation=cfg.activation), key)
    return eqx.tree_at(lambda n: n.layers[-1].bias, net, jnp.asarray(grid.flux.mean(axis=0), dtype=net.dtype))


def training_batch(key, data, batch_spectra: int, batch_pixels: int):
    """``batch_spectra`` full spectra: (labels, flux) (``batch_pixels`` does not apply)."""
    k1, _ = jax.random.split(key)
    idx = jax.random.randint(k1, (batch_spectra,), 0, data.flux.shape[0])
    return data.labels[idx], data.flux[idx]


def training_loss(net: PayneMLP, batch, err, continuum_weight: float, matmul_dtype=None):
    """Mean ``err`` of the flux residuals (no continuum output; ``matmul_dtype``: see :meth:`PayneMLP.__call__`)."""
    labels, flux = batch
    return jnp.mean(err(jax.vmap(lambda ls: net(ls, matmul_dtype))(labels) - flux))


def validation_flux(net: PayneMLP, labels, wavelength, pixels):
    """Flux (B, k) of scaled ``labels`` (B, n_labels) at the training pixels ``pixels`` (k,)."""
    return jax.vmap(net)(labels)[:, pixels]


def freeze_labels(params, freeze: tuple[str, ...]):
    """'train'/'freeze' per array leaf: ``output`` is the last layer, ``hidden`` all the others."""

    def label(path, _leaf):
        idx = path[1].idx if len(path) > 1 and hasattr(path[1], "idx") else None
        is_out = idx == len(params.layers) - 1
        return "freeze" if (("output" in freeze and is_out) or ("hidden" in freeze and not is_out)) else "train"

    return jax.tree_util.tree_map_with_path(label, params)
