"""TransformerPayne in Equinox: an attention emulator that answers any wavelength grid.

Per wavelength point (Różański, Ting & Jabłońska 2023/2024; see docs facts):

- query token: ``sin(2π·x/P_k)`` for ``dim`` periods ``P_k`` log-spaced in [min_period, max_period],
  with ``x = log10(λ/Å) − x_ref`` (``x_ref`` = log10 of the training range centre; the shift is a
  fixed phase per feature, so it changes nothing the network can represent, but it keeps ``x`` small
  enough that float32 resolves the phase of the shortest periods);
- label tokens: MLP (n_labels → dim, GELU → n_tokens·dim) on labels scaled to [−0.5, 0.5], reshaped
  to ``n_tokens`` tokens and RMS-normalised; they are keys/values of every layer;
- ``n_layers`` pre-norm blocks without biases: RMSNorm → multi-head cross-attention (query =
  wavelength token) → residual; RMSNorm → GELU feed-forward (×ff_mult) → residual;
- final RMSNorm → head MLP (dim → dim, GELU → 2): normalised flux and log10 continuum.

Speed: keys/values depend only on the labels, so :meth:`TransformerPayne.encode` computes them once per
spectrum and :meth:`TransformerPayne.decode` runs the cheap per-wavelength path over all pixels at once.
Layer weights are stacked along a leading ``n_layers`` axis and applied with a ``lax.scan`` unrolled
:data:`SCAN_UNROLL` layers at a time (quick to compile for deep networks, no per-layer slicing for the presets).
Training runs a batch of spectra through :meth:`TransformerPayne.decode` in one pass, optionally with bfloat16
matrix products (:func:`matmul`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..errors import StellarinfError
from .interpolation import LANCZOS_A, lagrange_weights, tap_indices

KIND = "transformer-payne"
# Layers per iteration of the decoder's layer loop: every layer of the presets up to 8 deep is unrolled.
SCAN_UNROLL = 8


@dataclasses.dataclass(frozen=True)
class TransformerPayneConfig:
    """Hyper-parameters of a TransformerPayne network (JSON-serialisable, hashable)."""

    n_labels: int
    dim: int = 64
    n_tokens: int = 8
    n_layers: int = 4
    n_heads: int = 2
    ff_mult: int = 4
    min_period: float = 1e-6
    max_period: float = 10.0
    log10_wavelength_ref: float = 0.0  # x_ref: log10 of the training range centre (Å)
    # Continuum head output y1 maps to log10 continuum = offset + scale * y1 (targets of order 1).
    log_continuum_offset: float = 0.0
    log_continuum_scale: float = 1.0

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise StellarinfError(
                f"TransformerPayne: dim={self.dim} is not divisible by n_heads={self.n_heads}; choose dim = heads × head size"
            )
        for name in ("n_labels", "dim", "n_tokens", "n_layers", "n_heads", "ff_mult"):
            if int(getattr(self, name)) < 1:
                raise StellarinfError(f"TransformerPayne: {name} must be ≥ 1, got {getattr(self, name)}")
        if not (0 < self.min_period < self.max_period):
            raise StellarinfError(
                f"TransformerPayne: need 0 < min_period < max_period, got {self.min_period}, {self.max_period}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "TransformerPayneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(doc) - names
        if unknown:
            raise StellarinfError(
                f"unknown TransformerPayne hyper-parameters {sorted(unknown)}; the model file is from a newer stellarinf"
            )
        return cls(**doc)


# Presets: `tiny` fits CI; `small` (default) is sized for CPU inference (head size 32);
# `paper` is the published size (about 17M parameters).
PRESETS: dict[str, dict] = {
    "tiny": dict(dim=32, n_tokens=4, n_layers=2, n_heads=2, ff_mult=4),
    "small": dict(dim=64, n_tokens=8, n_layers=4, n_heads=2, ff_mult=4),
    "paper": dict(dim=256, n_tokens=16, n_layers=16, n_heads=8, ff_mult=4),
}


def preset_config(name: str, n_labels: int, **overrides) -> TransformerPayneConfig:
    """Config of a named preset (``tiny``, ``small``, ``paper``) with optional overrides."""
    if name not in PRESETS:
        raise StellarinfError(f"unknown TransformerPayne preset {name!r}; choose one of {', '.join(PRESETS)}")
    return TransformerPayneConfig(n_labels=n_labels, **{**PRESETS[name], **overrides})


def rms_norm(x: Float[Array, "... d"], eps: float = 1e-6) -> Float[Array, "... d"]:
    """RMSNorm without a learned scale (as in the reference network)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def numpy_rng(key: PRNGKeyArray) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key: initialisers run in NumPy, so building a network compiles
    nothing (eager JAX random ops would each compile a small XLA program)."""
    with jax.ensure_compile_time_eval():  # also under eval_shape (skeletons for loading weights)
        data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    return np.random.default_rng(data.astype(np.uint64).ravel().tolist())


def _normal(rng: np.random.Generator, shape, fan_in, dtype, gain=1.0):
    return jnp.asarray((gain / math.sqrt(fan_in)) * rng.standard_normal(shape), dtype=dtype)


class Dense(eqx.Module):
    """Affine layer ``y = W @ x + b``; W (out, in), b (out,). Lecun-normal weights, zero bias. ``matmul_dtype``
    (training only): the product's operands in that dtype, accumulated in the weights' (:func:`matmul`)."""

    weight: Float[Array, "out in"]
    bias: Float[Array, "out"]

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, dtype=jnp.float32, gain: float = 1.0):
        self.weight = _normal(rng, (n_out, n_in), n_in, dtype, gain)
        self.bias = jnp.zeros((n_out,), dtype=dtype)

    def __call__(self, x: Float[Array, "in"], matmul_dtype=None) -> Float[Array, "out"]:
        if matmul_dtype is None:
            return self.weight @ x + self.bias
        return matmul(x[None], self.weight, matmul_dtype, self.weight.dtype)[0] + self.bias


class Blocks(eqx.Module):
    """``n_layers`` bias-free pre-norm cross-attention + feed-forward blocks, weights stacked on axis 0.

    Shapes (L = n_layers, D = dim, F = ff_mult·dim): ``wq, wk, wv, wo`` (L, D, D); ``w_in`` (L, F, D);
    ``w_out`` (L, D, F). Matrices act as ``y = W @ x`` (out, in).
    """

    wq: Float[Array, "L D D"]
    wk: Float[Array, "L D D"]
    wv: Float[Array, "L D D"]
    wo: Float[Array, "L D D"]
    w_in: Float[Array, "L F D"]
    w_out: Float[Array, "L D F"]

    def __init__(self, config: TransformerPayneConfig, rng: np.random.Generator, dtype=jnp.float32):
        L, D, F = config.n_layers, config.dim, config.ff_mult * config.dim
        # Residual-branch outputs start small so a deep stack begins close to the identity.
        res_gain = 1.0 / math.sqrt(2 * L)
        self.wq = _normal(rng, (L, D, D), D, dtype)
        self.wk = _normal(rng, (L, D, D), D, dtype)
        self.wv = _normal(rng, (L, D, D), D, dtype)
        self.wo = _normal(rng, (L, D, D), D, dtype, res_gain)
        self.w_in = _normal(rng, (L, F, D), D, dtype)
        self.w_out = _normal(rng, (L, D, F), F, dtype, res_gain)


class TransformerPayne(eqx.Module):
    """The TransformerPayne network. Inputs are already scaled labels; see :class:`~.emulator.Emulator`.

    Call ``net(labels_scaled (n_labels,), wavelength (n_pix,) Å) -> (n_pix, 2)``: column 0 is the
    normalised flux, column 1 the log10 continuum.
    """

    embed_in: Dense  # n_labels -> dim
    embed_out: Dense  # dim -> n_tokens * dim
    blocks: Blocks
    head_hidden: Dense  # dim -> dim
    head_out: Dense  # dim -> 2
    config: TransformerPayneConfig = eqx.field(static=True)

    def __init__(self, config: TransformerPayneConfig, key: PRNGKeyArray, dtype=jnp.float32):
        rng = numpy_rng(key)
        D = config.dim
        self.config = config
        self.embed_in = Dense(config.n_labels, D, rng, dtype)
        self.embed_out = Dense(D, config.n_tokens * D, rng, dtype)
        self.blocks = Blocks(config, rng, dtype)
        self.head_hidden = Dense(D, D, rng, dtype)
        self.head_out = Dense(D, 2, rng, dtype, gain=0.1)

    @property
    def dtype(self):
        return self.head_out.weight.dtype

    # -- label path (once per spectrum)
    def encode(
        self, labels_scaled: Float[Array, "n_labels"]
    ) -> tuple[Float[Array, "L T H E"], Float[Array, "L T H E"]]:
        """Keys and values of every layer for one spectrum: two arrays (n_layers, n_tokens, n_heads, head_dim)."""
        c = self.config
        x = jnp.asarray(labels_scaled).astype(self.dtype)
        tokens = self.embed_out(jax.nn.gelu(self.embed_in(x))).reshape(c.n_tokens, c.dim)
        tokens = rms_norm(tokens)
        k = jnp.einsum("lod,td->lto", self.blocks.wk, tokens).reshape(c.n_layers, c.n_tokens, c.n_heads, c.head_dim)
        v = jnp.einsum("lod,td->lto", self.blocks.wv, tokens).reshape(c.n_layers, c.n_tokens, c.n_heads, c.head_dim)
        return k, v

    # -- wavelength path (per pixel)
    def wavelength_token(self, wavelength: Float[Array, "*B n_pix"]) -> Float[Array, "*B n_pix dim"]:
        """Sinusoidal encoding of log10 wavelength, computed in the wavelength's precision (float64 for
        float64 input) and then cast: for the shortest periods the phase reaches ~1e4 rad, where float32
        arithmetic would make the token depend on how XLA happens to fuse the operations."""
        c = self.config
        wl = jnp.asarray(wavelength)
        wl = wl.astype(jnp.promote_types(wl.dtype, jnp.float32))
        periods = jnp.logspace(math.log10(c.min_period), math.log10(c.max_period), c.dim, dtype=wl.dtype)
        return jnp.sin((2 * jnp.pi) * log10_offset(wl, c.log10_wavelength_ref)[..., None] / periods).astype(self.dtype)

    def decode(self, kv, wavelength: Float[Array, "*B n_pix"], matmul_dtype=None) -> Float[Array, "*B n_pix 2"]:
        """Outputs (flux, log10 continuum) at every wavelength given one spectrum's keys/values, or a batch's: keys
        and values (*B, n_layers, …) from ``jax.vmap(net.encode)`` with wavelengths (*B, n_pix). A batch runs every
        pixel of every spectrum through one matrix product per weight (training does this; under ``jax.vmap`` each
        spectrum's weight gradient would be a product of its own, summed afterwards).

        ``matmul_dtype`` (training only, e.g. ``jnp.bfloat16``): the blocks' matrix products take their operands in
        that dtype and accumulate in the network's (:func:`matmul`); the residual stream, norms, softmax and the head
        stay in the network's dtype. None: everything in the network's dtype (every evaluation)."""
        c = self.config
        # the layer axis first, for the scan
        k_all, v_all = (jnp.moveaxis(a, -4, 0) for a in kv)  # (L, *B, T, H, E)
        h = self.wavelength_token(wavelength)  # (*B, P, D)
        heads = (*h.shape[:-1], c.n_heads, c.head_dim)
        scale = 1.0 / math.sqrt(c.head_dim)
        dt = self.dtype

        def layer(h, p):
            wq, wo, w_in, w_out, k, v = p
            q = matmul(rms_norm(h), wq, matmul_dtype, dt).reshape(heads)
            att = jax.nn.softmax(jnp.einsum("...phe,...the->...pht", q, k) * scale, axis=-1)
            h = h + matmul(jnp.einsum("...pht,...the->...phe", att, v).reshape(h.shape), wo, matmul_dtype, dt)
            # (the feed-forward's wide hidden layer in float32: XLA's CPU elementwise code is slower on bfloat16)
            hidden = jax.nn.gelu(matmul(rms_norm(h), w_in, matmul_dtype, dt))
            h = h + matmul(hidden, w_out, matmul_dtype, dt)
            return h, None

        b = self.blocks
        # Unrolled: XLA's CPU backend spent a quarter of a training step stacking and slicing a rolled scan's per-layer
        # residuals (benchmarks/train_step.py); the scan only keeps deeper networks quick to compile.
        h, _ = jax.lax.scan(layer, h, (b.wq, b.wo, b.w_in, b.w_out, k_all, v_all), unroll=min(c.n_layers, SCAN_UNROLL))
        h = rms_norm(h)
        flat = h.reshape(-1, c.dim)
        out = jax.vmap(lambda z: self.head_out(jax.nn.gelu(self.head_hidden(z))))(flat).reshape(*h.shape[:-1], 2)
        log_cont = c.log_continuum_offset + c.log_continuum_scale * out[..., 1]
        return jnp.stack([out[..., 0], log_cont.astype(out.dtype)], axis=-1)

    def __call__(
        self, labels_scaled: Float[Array, "n_labels"], wavelength: Float[Array, "n_pix"], matmul_dtype=None
    ) -> Float[Array, "n_pix 2"]:
        return self.decode(self.encode(labels_scaled), wavelength, matmul_dtype)

    def predict_flux(self, labels_scaled, wavelength) -> Float[Array, "n_pix"]:
        return self(labels_scaled, wavelength)[:, 0]


def matmul(x: Float[Array, "*P i"], w: Float[Array, "o i"], operand_dtype, out_dtype) -> Float[Array, "*P o"]:
    """``x @ w.T``. With ``operand_dtype`` (bfloat16: mixed-precision training) both operands are rounded to it and
    the product accumulates in float32 (matrix units such as AMX or tensor cores run bfloat16 several times faster
    than float32), returned as ``out_dtype``; None: the plain product in the operands' dtype."""
    if operand_dtype is None:
        return x @ w.T
    return _mixed_matmul(x, w, jnp.dtype(operand_dtype), jnp.dtype(out_dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mixed_matmul(x, w, operand_dtype, out_dtype):
    return _product(x.astype(operand_dtype), w.astype(operand_dtype).T, out_dtype)


def _product(a, b, out_dtype):
    return jnp.matmul(a, b, preferred_element_type=jnp.float32).astype(out_dtype)


def _mixed_matmul_fwd(x, w, operand_dtype, out_dtype):
    xo, wo = x.astype(operand_dtype), w.astype(operand_dtype)
    # (empty arrays carry the inputs' dtypes: residuals must be arrays)
    return _product(xo, wo.T, out_dtype), (xo, wo, jnp.zeros(0, x.dtype), jnp.zeros(0, w.dtype))


def _mixed_matmul_bwd(operand_dtype, out_dtype, saved, g):
    # The cotangent is rounded to the operand dtype as well, so both backward products run on the matrix units too
    # (JAX's own transpose of a mixed-dtype product multiplies float32 by bfloat16: slower than float32 alone); the
    # weight's gradient contracts every leading axis in one product.
    xo, wo, x_like, w_like = saved
    go = g.astype(operand_dtype)
    gw = _product(go.reshape(-1, go.shape[-1]).T, xo.reshape(-1, xo.shape[-1]), w_like.dtype)
    return _product(go, wo, x_like.dtype), gw


_mixed_matmul.defvjp(_mixed_matmul_fwd, _mixed_matmul_bwd)


def log10_offset(wavelength: Float[Array, "n_pix"], log10_ref: float) -> Float[Array, "n_pix"]:
    """``log10(λ) − log10_ref`` as accurately as ``λ``'s precision allows.

    float64: directly. float32: ``log10(λ)`` ≈ 3.8 comes out up to ~4e-7 off, a phase error of radians at the
    shortest periods (1e-6), which added 5.8e-4 mean absolute flux error to the shipped TransformerPayne
    against its own float64 answer (3.7e-5 this way; ``benchmarks/float32_wavelengths.py``). So the offset is taken from a float32 reference
    wavelength instead: ``λ − λ_ref`` is exact (Sterbenz) and ``log1p`` of the small ratio is accurate to a
    few ulp of the offset (1.3e-9 within ±130 Å of the reference); the reference's own rounding is added back as
    a constant computed in Python floats."""
    if wavelength.dtype == jnp.float64:
        return jnp.log10(wavelength) - log10_ref
    ref = np.float32(10.0**log10_ref)
    shift = float(np.log10(np.float64(ref)) - log10_ref)  # the float32 reference's own offset, ~1e-8
    ratio = (wavelength - ref) / ref
    return (jnp.log1p(ratio) / math.log(10.0) + shift).astype(wavelength.dtype)


def count_parameters(model: eqx.Module) -> int:
    """Number of parameters (works on real networks and on ``eqx.filter_eval_shape`` skeletons)."""
    leaves = jax.tree_util.tree_leaves(model)
    return int(sum(math.prod(x.shape) for x in leaves if isinstance(x, (jax.Array, jax.ShapeDtypeStruct))))


# ------------------------------------------------------------------------------------------------------------
# The hooks the network-kind table (emulators/kinds.py) reads: what differs from other kinds in evaluation and
# training. ``batch``/``data`` follow emulators/training.py (``data``: scaled labels, flux, standardised log10
# continuum or None, wavelength of the training grid).
# ------------------------------------------------------------------------------------------------------------
FREEZE_GROUPS = {"embedding": ("embed_in", "embed_out"), "blocks": ("blocks",), "head": ("head_hidden", "head_out")}


def flux(network: TransformerPayne, labels_scaled, wavelength) -> Float[Array, "n_pix"]:
    """Normalised flux at any ``wavelength`` (Å)."""
    return network(labels_scaled, wavelength)[:, 0]


def log10_continuum(network: TransformerPayne, labels_scaled, wavelength) -> Float[Array, "n_pix"]:
    """log10 of the absolute continuum (grid units) at ``wavelength``."""
    return network(labels_scaled, wavelength)[:, 1]


def continuum_stats(grid) -> tuple[float, float]:
    """(offset, scale) that standardise the grid's log10 continuum (0, 1 when it has none)."""
    if grid.continuum is None:
        return 0.0, 1.0
    lc = np.log10(np.maximum(grid.continuum, 1e-30))
    return float(lc.mean()), float(max(lc.std(), 1e-3))


def new_for_grid(cfg, grid, key) -> TransformerPayne:
    """A fresh network of preset ``cfg.preset`` (with ``cfg.overrides``) for ``grid``; the flux output bias starts
    at the grid's mean flux."""
    offset, scale = continuum_stats(grid)
    centre = 0.5 * (grid.wavelength[0] + grid.wavelength[-1])
    tp_cfg = preset_config(
        cfg.preset,
        len(grid.label_space),
        **{
            "log10_wavelength_ref": float(np.log10(centre)),
            "log_continuum_offset": offset,
            "log_continuum_scale": scale,
            **cfg.overrides,
        },
    )
    net = TransformerPayne(tp_cfg, key)
    bias = jnp.array([float(grid.flux.mean()), 0.0], dtype=net.dtype)
    return eqx.tree_at(lambda n: n.head_out.bias, net, bias)


def training_batch(key, data, batch_spectra: int, batch_pixels: int):
    """``batch_spectra`` spectra × ``batch_pixels`` random pixels each: (labels, wavelength, flux, log10 continuum)."""
    k1, k2 = jax.random.split(key)
    n, n_pix = data.flux.shape
    idx = jax.random.randint(k1, (batch_spectra,), 0, n)
    pix = jax.random.randint(k2, (batch_spectra, batch_pixels), 0, n_pix)
    lc = None if data.log_cont is None else data.log_cont[idx[:, None], pix]
    return data.labels[idx], data.wavelength[pix], data.flux[idx[:, None], pix], lc


def training_batch_continuous(key, data, batch_spectra: int, batch_pixels: int):
    """Like :func:`training_batch`, at wavelengths drawn uniformly between the grid's first and last pixel instead of
    at its pixels: the targets are the grid rows interpolated there by the 8-point Lagrange polynomial (linearly
    within 4 pixels of an edge).

    Why: trained at its pixels only, the network learns those wavelengths and is ~10× worse half a pixel away. The
    targets are only as good as the sampling: on a grid made with ``stellarinf grid --oversample 2`` (a line's σ ≥ 2.1
    samples at R 28,000) within ~1e-4 of a deep line, far below the emulator's error; on the instrument's own pixels
    (~2.5 per FWHM) up to ~1 % off in line cores (:func:`~.interpolation.lagrange_weights`).
    """
    k1, k2 = jax.random.split(key)
    n, n_pix = data.flux.shape
    a = LANCZOS_A
    idx = jax.random.randint(k1, (batch_spectra,), 0, n)
    u = jax.random.uniform(k2, (batch_spectra, batch_pixels), data.wavelength.dtype, 0.0, n_pix - 1.0)
    i0 = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, n_pix - 2)
    t = u - i0
    rows = idx[:, None, None]
    taps = tap_indices(i0, n_pix, a)
    w = lagrange_weights(t, a).astype(data.flux.dtype)
    polynomial = jnp.sum(data.flux[rows, taps] * w, axis=-1)
    tf = t.astype(data.flux.dtype)

    def linear(rows_of):  # (N, n_pix) → linearly interpolated at the drawn positions of the drawn rows
        return rows_of[idx[:, None], i0] * (1 - tf) + rows_of[idx[:, None], i0 + 1] * tf

    interior = (i0 - a + 1 >= 0) & (i0 + a <= n_pix - 1)
    flux = jnp.where(interior, polynomial, linear(data.flux))
    wl = data.wavelength[i0] * (1 - t) + data.wavelength[i0 + 1] * t
    # the continuum is smooth: linear is exact enough
    lc = None if data.log_cont is None else linear(data.log_cont)
    return data.labels[idx], wl, flux, lc


def training_loss(net: TransformerPayne, batch, err, continuum_weight: float, matmul_dtype=None):
    """Mean ``err`` of the flux residuals, plus ``continuum_weight`` × that of the standardised log continuum
    (``matmul_dtype``: see :meth:`TransformerPayne.decode`)."""
    labels, wl, flux, lc = batch

    out = net.decode(jax.vmap(net.encode)(labels), wl, matmul_dtype)  # (B, P, 2): one batched pass
    pf, pc = out[..., 0], (out[..., 1] - net.config.log_continuum_offset) / net.config.log_continuum_scale
    value = jnp.mean(err(pf - flux))
    if lc is not None:
        value = value + continuum_weight * jnp.mean(err(pc - lc))
    return value


def validation_flux(net: TransformerPayne, labels, wavelength, pixels):
    """Flux (B, k) of scaled ``labels`` (B, n_labels) at ``wavelength`` (k,) (the training pixels ``pixels``)."""
    return jax.vmap(lambda ls: net(ls, wavelength)[:, 0])(labels)


def freeze_labels(params, freeze: tuple[str, ...]):
    """'train'/'freeze' per array leaf: the attributes of the ``freeze`` groups (:data:`FREEZE_GROUPS`) are frozen."""
    frozen_attrs: set = set()
    for group in freeze:
        frozen_attrs.update(FREEZE_GROUPS[group])

    def label(path, _leaf):
        first = path[0].name if hasattr(path[0], "name") else None
        return "freeze" if first in frozen_attrs else "train"

    return jax.tree_util.tree_map_with_path(label, params)


def width_lr_multipliers(params, base_width: int):
    """Per-parameter learning-rate multipliers that make the best learning rate of a width carry over to other widths
    (muP for Adam, Yang et al. 2022, "Tensor Programs V"): every weight matrix whose input grows with ``dim`` (the
    blocks, the label tokens' second layer, the head) learns at ``base_width / dim`` of the rate; the label input layer
    (its fan-in is the label count) and the biases at the rate itself. Initialisations are already 1/√fan-in, and the
    presets widen by adding heads of a fixed size, so attention needs no rescaling. ``params``: the network's array
    leaves (``eqx.filter(net, eqx.is_inexact_array)``)."""
    ratio = float(base_width) / float(params.blocks.wq.shape[-1])

    def multiplier(path, leaf):
        if getattr(path[0], "name", None) == "embed_in" or leaf.ndim < 2:
            return 1.0
        return ratio

    return jax.tree_util.tree_map_with_path(multiplier, params)
