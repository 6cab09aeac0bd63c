"""Training TransformerPayne and the Payne MLP with optax; checkpoints, resume, fine-tuning.

What differs between network kinds (new networks, batches, losses, freeze groups, default settings) is read from
the table in :mod:`.kinds`.

- TransformerPayne steps use ``batch_spectra`` spectra × ``batch_pixels`` randomly drawn pixels each,
  so a step costs the same whatever the grid's pixel count; the Payne MLP steps use full spectra.
- MSE or L1 loss; AdamW or RAdam with linear warm-up + cosine decay; global-norm gradient clipping.
- The cosine ends at ``max_steps``, or, under a wall-clock budget with ``schedule="budget"``, where the budget ends:
  the run times its steps and holds the peak rate until the last ``decay_fraction`` of the steps the budget allows,
  then decays it (a 20,000-step cosine cut off after 1,000 steps by the budget never decays). The sizing is recorded
  in the checkpoint, so a resumed run follows it. Not the default: on this CPU's budgets of minutes, far from
  convergence, holding the peak rate trained better (``benchmarks/budget_schedule.py``).
- Validation every ``validate_every`` steps on a fixed subset; the best model is kept; early stopping
  after ``patience`` validations without improvement; a wall-clock budget (``max_minutes``, counted
  across resumed runs) for equal-compute comparisons.
- Everything random is a pure function of (seed, step) — the batch of step ``s`` is drawn from
  ``fold_in(key(seed), s)`` — so a resumed run draws exactly the batches the uninterrupted run would.
- Checkpoints (``<out>/checkpoint/``) hold network + optimiser state + best network (Equinox
  serialisation) and a JSON state (step, history, best, elapsed time); written atomically, the JSON last.
- Fine-tuning: ``init=`` a trained emulator (e.g. pre-trained on a large simple-fidelity grid), with an
  optionally lower learning rate and ``freeze`` groups (TransformerPayne: ``embedding``, ``blocks``,
  ``head``; Payne: ``hidden``, ``output``).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ..errors import ModelFileError, StellarinfError
from ..io.atomic import write_bytes_atomic, write_json_atomic
from ..io.grid import SpectralGrid, concatenate_grids, read_grid, split_indices
from .emulator import Emulator
from .kinds import NETWORK_KINDS, NetworkKind, get_kind
from .metrics import between_pixel_metrics, error_table, evaluate_emulator
from .model_io import architecture_of, deserialise, network_from_architecture, save_emulator, serialise
from .registry import load_emulator

CHECKPOINT_DIR = "checkpoint"
# Where training takes the loss (TrainConfig.wavelengths):
WAVELENGTH_MODES = {
    "auto": "continuous for TransformerPayne on an oversampled grid, instrument for the Payne on one, else pixels",
    "pixels": "every column of the grid (an oversampled grid's points between pixels too)",
    "instrument": "the instrument's pixels only (every --oversample-th column); held-out metrics use every column",
    "continuous": "TransformerPayne: wavelengths drawn anywhere between pixels, targets interpolated (grid "
    "--oversample 2 makes that exact)",
}
# How long the cosine schedule is (TrainConfig.schedule):
SCHEDULES = {
    "steps": "warm-up, then cosine decay over max_steps",
    "budget": "warm-up, the peak rate, then cosine decay over the last decay_fraction of the steps the time budget "
    "allows (timed on the run's first steps)",
}
# The dtype of the matrix products' operands in a training step (TrainConfig.precision); weights, optimiser state,
# loss and every evaluation stay float32 (float64 in fits):
PRECISIONS = {
    "float32": None,
    "bfloat16": jnp.bfloat16,  # mixed precision: for matrix units (AMX, tensor cores); benchmarks/train_step.py
}
# How the learning rate of each parameter follows the network's width (TrainConfig.lr_scaling):
LR_SCALINGS = {
    "standard": "one learning rate for every parameter",
    "mup": "width transfer (muP for Adam): the rate is tuned at base_width; matrices whose input grows with the width "
    "learn at base_width/width of it (TransformerPayne)",
}
# Steps timed to size a budget schedule: after the first two (compilation), this many (a few seconds on a CPU).
_TIMED_STEPS = 30
# Fraction of the measured budget the schedule plans for: validations, checkpoints and a machine shared with other
# work take time the timed steps did not see.
_BUDGET_SAFETY = 0.95
# settings older checkpoints did not record: the value their runs used
_CONFIG_BEFORE = {
    "wavelengths": "pixels",
    "schedule": "steps",
    "decay_fraction": 1.0,
    "precision": "float32",
    "lr_scaling": "standard",
    "base_width": 64,
}
# Run settings that may change between a run and its resumption without changing the result.
# (``schedule``: a run follows the schedule length its checkpoint recorded, once there is one.)
_RESUMABLE_CHANGES = {"max_minutes", "progress", "patience", "schedule", "decay_fraction"}


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run. ``None`` means "the default for this model kind" (see :meth:`resolved`)."""

    model: str = "transformer-payne"  # a network kind (kinds.NETWORK_KINDS)
    preset: str = "small"  # size preset of kinds that have them (TransformerPayne: tiny, small, paper)
    overrides: dict = dataclasses.field(default_factory=dict)  # TransformerPayne hyper-parameter overrides
    hidden: tuple[int, ...] = (300, 300)  # Payne hidden widths
    activation: str = "leaky_relu"  # Payne activation (payne.ACTIVATIONS)
    loss: str = "mse"  # mse | l1
    optimizer: str = "adamw"  # adamw | radam
    learning_rate: float | None = None  # TP 1e-3, Payne 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 20_000
    batch_spectra: int | None = None  # TP 32, Payne 128
    batch_pixels: int = 256  # TransformerPayne only
    wavelengths: str = "auto"  # where the loss is taken: WAVELENGTH_MODES
    schedule: str = "steps"  # how the learning rate decays: SCHEDULES
    decay_fraction: float = 0.2  # budget schedule: the last fraction of its steps over which the rate decays
    precision: str = "float32"  # operands of the step's matrix products: PRECISIONS
    lr_scaling: str = "standard"  # per-parameter learning rates by width: LR_SCALINGS
    base_width: int = 64  # lr_scaling "mup": the width learning_rate is meant for (TransformerPayne small: 64)
    grad_clip: float = 1.0
    continuum_weight: float = 0.1  # weight of the (standardised) log-continuum loss term, TP only
    validate_every: int = 200
    val_max_spectra: int = 256
    val_pixels: int = 1024
    patience: int | None = 20  # validations without improvement before stopping; None = never
    max_minutes: float | None = None
    seed: int = 0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    freeze: tuple[str, ...] = ()
    error_max_spectra: int = 512
    progress: bool = True

    def resolved(self) -> "TrainConfig":
        if self.model not in NETWORK_KINDS:
            raise StellarinfError(f"unknown model {self.model!r}; choose one of {', '.join(NETWORK_KINDS)}")
        kind = NETWORK_KINDS[self.model]
        if self.loss not in ("mse", "l1"):
            raise StellarinfError(f"unknown loss {self.loss!r}; choose 'mse' or 'l1'")
        if self.optimizer not in ("adamw", "radam"):
            raise StellarinfError(f"unknown optimizer {self.optimizer!r}; choose 'adamw' or 'radam'")
        bad = set(self.freeze) - set(kind.freeze_groups)
        if bad:
            raise StellarinfError(
                f"cannot freeze {sorted(bad)} of a {self.model}; groups are {', '.join(kind.freeze_groups)}"
            )
        if self.max_steps < 1 or self.validate_every < 1:
            raise StellarinfError("max_steps and validate_every must be ≥ 1")
        for name in ("batch_spectra", "batch_pixels"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise StellarinfError(f"{name} must be ≥ 1, got {value} (CLI: --{name.replace('_', '-')})")
        if self.wavelengths not in WAVELENGTH_MODES:
            raise StellarinfError(
                f"unknown wavelengths {self.wavelengths!r}; choose one of {', '.join(WAVELENGTH_MODES)}"
            )
        if self.wavelengths == "continuous" and kind.continuous_batch is None:
            raise StellarinfError(
                f"a {self.model} predicts its training pixels only and cannot train at wavelengths between them; use "
                "--wavelengths instrument or pixels (or --model transformer-payne)"
            )
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise StellarinfError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.schedule not in SCHEDULES:
            raise StellarinfError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.lr_scaling not in LR_SCALINGS:
            raise StellarinfError(f"unknown lr_scaling {self.lr_scaling!r}; choose one of {', '.join(LR_SCALINGS)}")
        if self.lr_scaling == "mup" and kind.width_lr_multipliers is None:
            raise StellarinfError(f"lr_scaling 'mup' is for TransformerPayne; a {self.model} trains with 'standard'")
        if int(self.base_width) < 1:
            raise StellarinfError(f"base_width must be ≥ 1, got {self.base_width}")
        if self.precision not in PRECISIONS:
            raise StellarinfError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise StellarinfError(f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        if self.schedule == "budget" and self.max_minutes is None:
            raise StellarinfError(
                "schedule 'budget' fits the learning-rate decay to a time budget: give one (--max-minutes), or use "
                "schedule 'steps'"
            )
        return dataclasses.replace(
            self,
            learning_rate=self.learning_rate if self.learning_rate is not None else kind.learning_rate,
            batch_spectra=self.batch_spectra if self.batch_spectra is not None else kind.batch_spectra,
            hidden=tuple(int(h) for h in self.hidden),
            freeze=tuple(self.freeze),
            split=tuple(float(f) for f in self.split),
        )

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"], d["freeze"], d["split"] = list(self.hidden), list(self.freeze), list(self.split)
        return d


@dataclasses.dataclass
class TrainResult:
    emulator: Emulator
    metrics: dict  # held-out metrics (mae, mse, p99, ...) and run summary
    history: list[dict]
    stop_reason: str
    output: Path | None


class _ProgressBar:
    """Training progress in the unit that ends the run: seconds of the wall-clock budget when ``max_minutes`` is
    set (a step bar over ``max_steps`` = 10⁹ showed an ETA of 1,240 h), else steps. Steps show in the postfix."""

    def __init__(self, cfg, state, kind):
        self.timed = cfg.max_minutes is not None
        self.step = state["step"]
        if self.timed:
            total = float(cfg.max_minutes) * 60.0
            self.bar = tqdm(
                total=round(total, 1),
                initial=round(min(state["elapsed_s"], total), 1),
                desc=f"train {kind} (time budget)",
                unit="s",
                disable=not cfg.progress,
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]",
            )
            self.shown = min(state["elapsed_s"], total)
        else:
            self.bar = tqdm(
                total=cfg.max_steps,
                initial=state["step"],
                desc=f"train {kind}",
                unit="step",
                disable=not cfg.progress,
                dynamic_ncols=True,
            )

    def advance(self, state) -> None:
        self.step = state["step"]
        if not self.timed:
            self.bar.update(1)
            return
        now = min(state["elapsed_s"], self.bar.total)
        if now - self.shown >= 0.1 or now >= self.bar.total:
            self.bar.update(round(now - self.shown, 3))
            self.shown = now

    def set_postfix(self, **kwargs) -> None:
        if self.timed:
            kwargs = {"step": self.step, **kwargs}
        self.bar.set_postfix(**kwargs)

    def note(self, text: str) -> None:
        """A line above the bar (when the bar is shown)."""
        if not self.bar.disable:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


# ------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class _Data:
    labels: jax.Array  # (N, n_labels) scaled, float32
    flux: jax.Array  # (N, n_pix) float32
    log_cont: jax.Array | None  # (N, n_pix) standardised log10 continuum, float32
    wavelength: jax.Array  # (n_pix,) float64

    @classmethod
    def from_grid(cls, grid: SpectralGrid, offset: float, scale: float):
        s = grid.label_space.scale(grid.labels).astype(np.float32)
        lc = None
        if grid.continuum is not None:
            lc = ((np.log10(np.maximum(grid.continuum, 1e-30)) - offset) / scale).astype(np.float32)
        return cls(
            jnp.asarray(s),
            jnp.asarray(grid.flux),
            None if lc is None else jnp.asarray(lc),
            jnp.asarray(grid.wavelength),
        )


# A pytree, so the training arrays are jit arguments (not constants baked into the compiled step).
jax.tree_util.register_dataclass(_Data, data_fields=["labels", "flux", "log_cont", "wavelength"], meta_fields=[])


def _grid_fingerprint(grid: SpectralGrid) -> dict:
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(grid.labels).tobytes())
    h.update(np.ascontiguousarray(grid.wavelength).tobytes())
    h.update(np.ascontiguousarray(grid.flux[:, :: max(1, grid.n_pixels // 64)]).tobytes())
    return {
        "n_spectra": len(grid),
        "n_pixels": grid.n_pixels,
        "labels": list(grid.label_space.names),
        "sha256": h.hexdigest(),
    }


# ------------------------------------------------------------------------------------- networks
def new_network(cfg: TrainConfig, grid: SpectralGrid, key):
    """A freshly initialised network of kind ``cfg.model`` for ``grid``; output biases start at the mean training flux."""
    return get_kind(cfg.model).new_network(cfg, grid, key)


def learning_rate(cfg: TrainConfig, count, total, decay_start):
    """The learning rate at step ``count``: linear warm-up over ``warmup_steps`` to the peak, the peak until
    ``decay_start``, then cosine decay to 1 % of the peak at ``total``. A ``decay_start`` within the warm-up (0 for
    the plain schedule) starts the decay right after it: warm-up + cosine over ``total``. Later: warm-up, stable,
    decay (the rate held while the network is far from converged, annealed over the last part, for a run that must
    end at a given time). ``total`` and ``decay_start`` may be traced: a schedule re-sized mid-run compiles nothing."""
    peak = cfg.learning_rate
    end = 0.01 * peak
    count = jnp.asarray(count, jnp.float32)
    warmup = jnp.maximum(jnp.minimum(jnp.float32(cfg.warmup_steps), jnp.asarray(total, jnp.float32) - 1.0), 1.0)
    start = jnp.maximum(jnp.asarray(decay_start, jnp.float32), warmup)
    frac = jnp.clip((count - start) / jnp.maximum(jnp.asarray(total, jnp.float32) - start, 1.0), 0.0, 1.0)
    cosine = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return jnp.where(count < warmup, peak * count / warmup, jnp.where(count < start, peak, cosine))


def make_optimizer(
    cfg: TrainConfig, params, kind: NetworkKind, schedule: Callable | None = None
) -> optax.GradientTransformation:
    """AdamW/RAdam with gradient clipping; the learning rate ``schedule(count)`` (default: warm-up + cosine over
    ``max_steps``, :func:`learning_rate`). The optimiser state does not depend on the schedule, so the training step
    builds its optimiser around the schedule it is given each step (see ``_make_step``)."""
    if schedule is None:
        schedule = lambda count: learning_rate(cfg, count, cfg.max_steps, 0)  # noqa: E731
    # Decay matrices only (not biases).
    decay_mask = jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)
    if cfg.optimizer == "adamw":
        base = optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)
    else:
        # RAdam with decoupled weight decay (decay added before the schedule-scaled update, as in AdamW).
        base = optax.chain(
            optax.scale_by_radam(),
            optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask),
            optax.scale_by_learning_rate(schedule),
        )
    opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), base)
    if cfg.lr_scaling == "mup":
        opt = optax.chain(opt, _scale_each(kind.width_lr_multipliers(params, cfg.base_width)))
    if cfg.freeze:
        labels = kind.freeze_labels(params, cfg.freeze)
        # (a callable, because optax would otherwise *call* the label tree: Equinox modules are callable)
        opt = optax.multi_transform({"train": opt, "freeze": optax.set_to_zero()}, lambda _: labels)
    return opt


def _scale_each(multipliers) -> optax.GradientTransformation:
    """Multiply each parameter's update by its own constant (no state: checkpoints keep their shape)."""

    def update(updates, state, params=None):
        return jax.tree_util.tree_map(lambda u, m: u * m, updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# ------------------------------------------------------------------------------------- steps
def _loss_fn(kind: NetworkKind, loss: str, continuum_weight: float, precision: str = "float32"):
    err = (lambda r: jnp.square(r)) if loss == "mse" else (lambda r: jnp.abs(r))
    matmul_dtype = PRECISIONS[precision]

    def loss_fn(params, static, batch):
        return kind.training_loss(eqx.combine(params, static), batch, err, continuum_weight, matmul_dtype)

    return loss_fn


def _make_step(kind: NetworkKind, cfg: TrainConfig, static, base_key):
    """One training step, compiled once: ``schedule`` = (last step, decay start) are arguments, not constants."""
    loss_fn = _loss_fn(kind, cfg.loss, cfg.continuum_weight, cfg.precision)

    draw = kind.continuous_batch if cfg.wavelengths == "continuous" else kind.training_batch

    @jax.jit
    def step_fn(params, opt_state, step, data: _Data, schedule):
        batch = draw(jax.random.fold_in(base_key, step), data, cfg.batch_spectra, cfg.batch_pixels)
        loss, grads = jax.value_and_grad(loss_fn)(params, static, batch)
        optimizer = make_optimizer(cfg, params, kind, lambda count: learning_rate(cfg, count, *schedule))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step_fn


def budget_schedule_steps(
    step: int,
    elapsed_s: float,
    budget_s: float,
    step_s: float,
    validation_s: float,
    validate_every: int,
    max_steps: int,
) -> int:
    """The step at which a schedule sized to a time budget ends: the steps still affordable at ``step_s`` seconds
    each plus a validation (``validation_s``) every ``validate_every`` steps, with a safety margin; at least one more
    step, at most ``max_steps``."""
    left = _BUDGET_SAFETY * (budget_s - elapsed_s)
    per_step = step_s + validation_s / max(validate_every, 1)
    more = int(left // per_step) if per_step > 0 and left > 0 else 0
    return int(min(max_steps, step + max(more, 1)))


def _time_budget_steps(timing: dict, n: int, params) -> bool:
    """Time this process's first steps (``n`` taken so far; the step just dispatched is waited for): the first two
    include compilation, steps 3 to ``2 + _TIMED_STEPS`` give ``timing["step_s"]``. True once it is known."""
    if n == 2:
        jax.block_until_ready(params)
        timing["t2"] = time.monotonic()
    elif n == 2 + _TIMED_STEPS:
        jax.block_until_ready(params)
        timing["step_s"] = (time.monotonic() - timing["t2"]) / _TIMED_STEPS
        return True
    return False


# ------------------------------------------------------------------------------------- checkpoints
def _ckpt_dir(out: Path) -> Path:
    return out / CHECKPOINT_DIR


def _write_checkpoint(out: Path, state: dict, net, opt_state, best_net) -> None:
    d = _ckpt_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    name = f"state-{state['step']:09d}.eqx"
    write_bytes_atomic(d / name, serialise((net, opt_state, best_net)))
    write_json_atomic(d / "state.json", {**state, "arrays": name})
    for old in d.glob("state-*.eqx"):  # only after the JSON points at the new file
        if old.name != name:
            old.unlink(missing_ok=True)


def _read_checkpoint(out: Path) -> dict | None:
    path = _ckpt_dir(out) / "state.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"checkpoint {path} is corrupt ({exc}); delete {path.parent} to start the training over"
        ) from None


def _check_resumable(saved: dict, cfg: TrainConfig, fingerprint: dict) -> None:
    if saved["grid"] != fingerprint:
        raise StellarinfError(
            "the output directory holds a checkpoint of training on a different grid; use the same grid to resume, "
            "or choose another output directory"
        )
    now = cfg.to_json()
    diff = sorted(
        k for k in now if k not in _RESUMABLE_CHANGES and saved["config"].get(k, _CONFIG_BEFORE.get(k)) != now[k]
    )
    if diff:
        raise StellarinfError(
            f"the output directory holds a checkpoint made with different settings ({', '.join(diff)}); use the same "
            "settings to resume it, or choose another output directory"
        )


# ------------------------------------------------------------------------------------- main loop
def _resolve_init(init) -> Emulator | None:
    if init is None:
        return None
    return load_emulator(init)


def _init_network(cfg: TrainConfig, grid: SpectralGrid, init: Emulator | None, key):
    if init is None:
        return new_network(cfg, grid, key)
    if init.kind != cfg.model:
        raise StellarinfError(
            f"--init model is a {init.kind} but --model is {cfg.model}; use the same kind to fine-tune"
        )
    if init.label_space.names != grid.label_space.names:
        raise StellarinfError(
            f"--init model has labels {init.label_space.names} but the grid has {grid.label_space.names}; "
            "fine-tuning needs the same labels in the same order"
        )
    # the network sees labels scaled over the box: another box would feed it other inputs for the same star
    differ = [
        f"{lab.name} {lab.lower:g}..{lab.upper:g} (model {ilab.lower:g}..{ilab.upper:g})"
        for lab, ilab in zip(grid.label_space.labels, init.label_space.labels)
        if not (np.isclose(lab.lower, ilab.lower) and np.isclose(lab.upper, ilab.upper))
    ]
    if differ:
        raise StellarinfError(
            f"the grid's label box differs from the --init model's: {'; '.join(differ)}. The network sees labels scaled "
            "over its box; fine-tune on a grid with the model's box, or train a corner grid together with one that "
            "spans the box (--grid BROAD.h5 --grid CORNER.h5)"
        )
    if not init.network_kind.any_wavelength and (
        init.training_wavelength.shape != grid.wavelength.shape
        or not np.allclose(np.asarray(init.training_wavelength), grid.wavelength, rtol=0, atol=1e-6)
    ):
        raise StellarinfError(
            f"a {init.kind} network can only be fine-tuned on its own training wavelength grid (its outputs are those "
            "pixels)"
        )
    return init.astype(jnp.float32).network


def _wavelength_mode(cfg: TrainConfig, train_g: SpectralGrid, val_g: SpectralGrid):
    """Resolve ``cfg.wavelengths`` for this grid; the training and validation grids that mode trains and validates on
    (the instrument's pixels of an oversampled grid for ``instrument``). The test grid keeps every column."""
    kind = get_kind(cfg.model)
    mode = cfg.wavelengths
    if mode == "auto":
        mode = "pixels" if train_g.oversample == 1 else "continuous" if kind.continuous_batch else "instrument"
    if mode == "continuous" and train_g.oversample == 1:
        warnings.warn(
            "training at wavelengths between the pixels of a grid sampled at the instrument's pixels: the targets there "
            "are interpolations up to ~1 % off in the narrowest line cores; make the grid with `stellarinf grid "
            "--oversample 2` for exact ones",
            stacklevel=3,
        )
    if mode == "instrument":
        train_g, val_g = train_g.instrument_pixels(), val_g.instrument_pixels()
    return dataclasses.replace(cfg, wavelengths=mode), train_g, val_g


def _grid_inputs(grid, validation, test, cfg):
    def loaded(g):  # (grid, where it came from)
        if isinstance(g, (str, os.PathLike)):
            return read_grid(g), str(g)
        return g, g.metadata.get("path", "<in memory>")

    inputs = [loaded(g) for g in (grid if isinstance(grid, (list, tuple)) else [grid])]
    if len(inputs) == 1:
        grid, source = inputs[0]
    else:  # several grids (a broad design and a corner of it): their rows as one
        grid = concatenate_grids([g for g, _ in inputs], sources=[s for _, s in inputs])
        source = grid.metadata["path"]
    if validation is None:
        parts = split_indices(len(grid), cfg.split, seed=cfg.seed)
        train_g, val_g, test_g = (
            grid.subset(parts["train"]),
            grid.subset(parts["validation"]),
            grid.subset(parts["test"]),
        )
        if test is not None:
            test_g = test
    else:
        train_g, val_g, test_g = grid, validation, test if test is not None else validation
    if len(train_g) < 1 or len(val_g) < 1 or len(test_g) < 1:
        raise StellarinfError(
            f"the grid has {len(grid)} spectra: too few to split into train/validation/test; use a larger grid"
        )
    for g in (val_g, test_g):
        if g.label_space.names != train_g.label_space.names or g.n_pixels != train_g.n_pixels:
            raise StellarinfError("validation/test grids must have the training grid's labels and wavelength grid")
    return source, train_g, val_g, test_g


def train(
    grid: SpectralGrid | str | os.PathLike | Sequence[SpectralGrid | str | os.PathLike],
    out_dir: str | os.PathLike | None,
    config: TrainConfig | None = None,
    *,
    init: Emulator | str | os.PathLike | None = None,
    validation: SpectralGrid | None = None,
    test: SpectralGrid | None = None,
    callback: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train an emulator on ``grid`` (or on the rows of several grids together, :func:`.io.grid.concatenate_grids`);
    write checkpoints and the final model into ``out_dir``.

    ``validation``/``test`` grids may be given; otherwise ``grid`` is split by ``config.split``
    (seeded). If ``out_dir`` holds a checkpoint of the same run, training resumes from it (a finished
    run is returned as is; one stopped by ``max_minutes`` continues if the budget was raised).
    ``callback(step, info)`` is called after every step (and checkpoint), e.g. for monitoring.
    """
    cfg = (config or TrainConfig()).resolved()
    source, train_g, val_g, test_g = _grid_inputs(grid, validation, test, cfg)
    cfg, train_g, val_g = _wavelength_mode(cfg, train_g, val_g)
    init_emu = _resolve_init(init)
    out = None if out_dir is None else Path(out_dir)
    fingerprint = _grid_fingerprint(train_g)
    kind = get_kind(cfg.model)

    key = jax.random.key(cfg.seed)
    init_key, data_key = jax.random.split(key)
    net = _init_network(cfg, train_g, init_emu, init_key)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    optimizer = make_optimizer(cfg, params, kind)
    opt_state = optimizer.init(params)
    best_params = params

    state = {
        "step": 0,
        "best_step": 0,
        "best_val_mae": None,
        "bad_validations": 0,
        "elapsed_s": 0.0,
        "history": [],
        "stop_reason": None,
        "config": cfg.to_json(),
        "grid": fingerprint,
        "architecture": architecture_of(net),
        "init": None if init_emu is None else str(init) if not isinstance(init, Emulator) else "<in memory>",
        # where the cosine ends: max_steps, or (budget schedule) measured while training, fixed once its decay starts
        "schedule_steps": None if cfg.schedule == "budget" else cfg.max_steps,
        "decay_start": None,  # (budget schedule) the step where the rate starts to decay; None: after the warm-up
    }
    saved = _read_checkpoint(out) if out is not None else None
    if saved is not None:
        _check_resumable(saved, cfg, fingerprint)
        skeleton = network_from_architecture(saved["architecture"], shapes_only=True)
        sk_params = eqx.filter(skeleton, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        try:
            data = (_ckpt_dir(out) / saved["arrays"]).read_bytes()
            net_l, opt_state, best_l = deserialise(
                data, (skeleton, jax.eval_shape(optimizer.init, sk_params), skeleton)
            )
        except Exception as exc:
            raise ModelFileError(
                f"checkpoint in {_ckpt_dir(out)} is unreadable ({exc}); delete that folder to start over"
            ) from None
        params, static = eqx.partition(net_l, eqx.is_inexact_array)
        best_params = eqx.filter(best_l, eqx.is_inexact_array)
        state = {**saved, "config": cfg.to_json()}
        state.setdefault("schedule_steps", cfg.max_steps)  # checkpoints before budget schedules: over max_steps
        state.setdefault("decay_start", None)
        if state["schedule_steps"] is None and cfg.schedule == "steps":
            state["schedule_steps"] = cfg.max_steps  # not sized yet, and now asked for a schedule over max_steps
        finished = saved.get("stop_reason") in ("max_steps", "schedule_end", "early_stopping")
        budget_left = cfg.max_minutes is None or saved["elapsed_s"] < cfg.max_minutes * 60
        if (finished or not budget_left) and (out / "model.json").exists():
            emu = load_emulator(out)
            return TrainResult(emu, emu.metadata.get("metrics", {}), saved["history"], saved["stop_reason"], out)

    # kinds that predict the continuum standardise it with their config's offset and scale
    train_data = _Data.from_grid(
        train_g,
        net.config.log_continuum_offset if kind.predicts_continuum else 0.0,
        net.config.log_continuum_scale if kind.predicts_continuum else 1.0,
    )
    rng = np.random.default_rng(cfg.seed + 1)
    n_val = min(len(val_g), cfg.val_max_spectra)
    val_rows = np.sort(rng.choice(len(val_g), n_val, replace=False))
    val_pix = np.sort(rng.choice(val_g.n_pixels, min(cfg.val_pixels, val_g.n_pixels), replace=False))
    val_labels = jnp.asarray(val_g.label_space.scale(val_g.labels[val_rows]).astype(np.float32))
    val_flux = jnp.asarray(val_g.flux[val_rows][:, val_pix])
    val_wl = jnp.asarray(val_g.wavelength[val_pix])
    step_fn = _make_step(kind, cfg, static, data_key)

    @jax.jit
    def val_fn(params):
        pred = kind.validation_flux(eqx.combine(params, static), val_labels, val_wl, val_pix)
        r = pred - val_flux
        return jnp.mean(jnp.abs(r)), jnp.mean(jnp.square(r))

    def checkpoint():
        if out is not None:
            _write_checkpoint(out, state, eqx.combine(params, static), opt_state, eqx.combine(best_params, static))

    def validate():
        nonlocal best_params
        mae, mse = (float(v) for v in val_fn(params))
        entry = {
            "step": state["step"],
            "val_mae": mae,
            "val_mse": mse,
            "loss": last_loss,
            "elapsed_s": round(state["elapsed_s"], 3),
        }
        state["history"].append(entry)
        if state["best_val_mae"] is None or mae < state["best_val_mae"]:
            state.update(best_val_mae=mae, best_step=state["step"], bad_validations=0)
            best_params = params
        else:
            state["bad_validations"] += 1
        return mae

    state["stop_reason"] = None
    last_loss = state["history"][-1]["loss"] if state["history"] else None
    if not state["history"]:
        validate()  # step 0: the starting point (useful to see what pre-training bought)
    t0, elapsed0 = time.monotonic(), state["elapsed_s"]
    bar = _ProgressBar(cfg, state, kind.name)
    first_step = state["step"]
    timing = {"sized_at": (state["step"], state["elapsed_s"])}  # for sizing a budget schedule
    budget = cfg.schedule == "budget"

    def schedule_args():
        """(last step, decay start) of the schedule the step follows: traced arguments, so re-sizing compiles nothing
        (max_steps and 0, warm-up + cosine, until a budget schedule is sized)."""
        total = state["schedule_steps"] or cfg.max_steps
        return jnp.asarray(total, jnp.int32), jnp.asarray(state["decay_start"] or 0, jnp.int32)

    def size_budget_schedule(step_s: float, validation_s: float) -> None:
        total = budget_schedule_steps(
            state["step"],
            state["elapsed_s"],
            cfg.max_minutes * 60.0,
            step_s,
            validation_s,
            cfg.validate_every,
            cfg.max_steps,
        )
        decay = max(int(round(cfg.decay_fraction * total)), 1)
        # never back into the past: a decay that should have started already starts now
        state["decay_start"] = max(total - decay, state["step"]) if cfg.decay_fraction < 1.0 else 0
        state["schedule_steps"] = max(total, state["decay_start"] + 1)
        timing["sized_at"] = (state["step"], state["elapsed_s"])

    try:
        while True:
            if state["step"] >= cfg.max_steps:
                state["stop_reason"] = "max_steps"
                break
            if state["schedule_steps"] is not None and state["step"] >= state["schedule_steps"]:
                state["stop_reason"] = "schedule_end"
                break
            if cfg.max_minutes is not None and state["elapsed_s"] >= cfg.max_minutes * 60:
                state["stop_reason"] = "time_budget"
                break
            params, opt_state, loss = step_fn(
                params, opt_state, jnp.asarray(state["step"], dtype=jnp.int32), train_data, schedule_args()
            )
            state["step"] += 1
            state["elapsed_s"] = elapsed0 + time.monotonic() - t0
            if state["schedule_steps"] is None:  # a budget schedule not sized yet: time this step
                if _time_budget_steps(timing, state["step"] - first_step, params):
                    t_val = time.monotonic()
                    jax.block_until_ready(val_fn(params))
                    size_budget_schedule(timing["step_s"], time.monotonic() - t_val)
                    bar.note(
                        f"schedule: peak rate until step {max(state['decay_start'], cfg.warmup_steps)}, decayed by "
                        f"step {state['schedule_steps']} ({timing['step_s']:.3g} s per step, {cfg.max_minutes:g} min "
                        "budget; re-sized at each validation until the decay starts)"
                    )
            if state["step"] % 10 == 0 or state["step"] % cfg.validate_every == 0:
                last_loss = float(loss)
                if not math.isfinite(last_loss):
                    raise StellarinfError(
                        f"training diverged at step {state['step']} (loss {last_loss}); lower --lr or the gradient clip"
                    )
            bar.advance(state)
            if state["step"] % cfg.validate_every == 0:
                mae = validate()
                bar.set_postfix(loss=f"{last_loss:.3g}", val_mae=f"{mae:.3g}", best=f"{state['best_val_mae']:.3g}")
                if cfg.patience is not None and state["bad_validations"] >= cfg.patience:
                    state["stop_reason"] = "early_stopping"
                if budget and state["decay_start"] is not None and state["step"] < state["decay_start"]:
                    # still at the peak rate: where to decay can follow the pace measured since the last sizing
                    # (validations and checkpoints included), which a busy machine may have changed
                    last_step, last_s = timing["sized_at"]
                    state["elapsed_s"] = elapsed0 + time.monotonic() - t0
                    size_budget_schedule((state["elapsed_s"] - last_s) / max(state["step"] - last_step, 1), 0.0)
                checkpoint()
                if state["stop_reason"]:
                    break
            elif state["step"] % 10 == 0:
                bar.set_postfix(loss=f"{last_loss:.3g}", best=f"{state['best_val_mae'] or float('nan'):.3g}")
            if callback is not None:
                callback(state["step"], state)
    finally:
        bar.close()
    if not state["history"] or state["history"][-1]["step"] != state["step"]:
        validate()  # the final parameters always get a chance to be the best
    checkpoint()

    emulator = _finish(cfg, eqx.combine(best_params, static), train_g, test_g, source, state)
    if out is not None:
        save_emulator(out, emulator)
    return TrainResult(emulator, emulator.metadata["metrics"], state["history"], state["stop_reason"], out)


def _finish(cfg, net, train_g: SpectralGrid, test_g: SpectralGrid, source, state) -> Emulator:
    """Wrap the best network, measure held-out metrics and the emulator-error table."""
    # a network trained between pixels is accurate anywhere: fits evaluate it at the instrument's pixels
    wl = train_g.wavelength[:: train_g.oversample] if cfg.wavelengths == "continuous" else train_g.wavelength
    res = train_g.metadata.get("resolution")
    emu = Emulator(
        net,
        train_g.label_space,
        (float(wl[0]), float(wl[-1])),
        resolution=res,
        training_wavelength=wl,
        has_continuum=train_g.continuum is not None,
    )
    rows = np.arange(min(len(test_g), cfg.error_max_spectra))
    acc, _ = evaluate_emulator(emu, test_g, index=rows, batch_size=8)
    ew, es = error_table(test_g.wavelength, acc.pixel_rms())
    metrics = {
        **acc.result(),
        **between_pixel_metrics(acc, test_g.oversample),
        "split": "test",
        "best_val_mae": state["best_val_mae"],
        "best_step": state["best_step"],
        "steps": state["step"],
        "elapsed_s": round(state["elapsed_s"], 2),
        "stop_reason": state["stop_reason"],
        "schedule_steps": state["schedule_steps"],
        "decay_start": state["decay_start"],
    }
    meta = {
        "training_grid": {
            "path": source,
            "n_train": len(train_g),
            "n_test": len(test_g),
            "n_pixels": train_g.n_pixels,
            "sha256": state["grid"]["sha256"],
            "metadata": train_g.metadata,
        },
        "metrics": metrics,
        "training": {
            **cfg.to_json(),
            "init": state.get("init"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    return Emulator(
        net,
        train_g.label_space,
        emu.wavelength_range,
        resolution=res,
        error_wavelength=ew,
        error_sigma=es,
        training_wavelength=emu.training_wavelength,
        has_continuum=emu.has_continuum,
        metadata=meta,
    )
