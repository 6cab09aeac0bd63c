"""``stellarinf train``: train a TransformerPayne or Payne MLP emulator on a grid file."""

from __future__ import annotations

import click

from ..emulators.kinds import NETWORK_KINDS, preset_names


def _hidden(ctx, param, value):
    try:
        widths = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give comma-separated integers, e.g. 300,300") from None
    if not widths or min(widths) < 1:
        raise click.BadParameter("give at least one positive width, e.g. 300,300")
    return widths


@click.command(name="train")
@click.option(
    "--grid",
    "grid_path",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Training grid (HDF5, from `stellarinf grid`). Repeat to train on several grids' rows together (a broad design "
    "and a denser grid of a corner of its box: same window, labels and physics; the split is over all their rows).",
)
@click.option(
    "--model",
    type=click.Choice(list(NETWORK_KINDS)),
    default=next(iter(NETWORK_KINDS)),
    show_default=True,
    help="Network kind (stellarinf/emulators/kinds.py).",
)
@click.option(
    "--preset",
    type=click.Choice(preset_names()),
    default="small",
    show_default=True,
    help="TransformerPayne size.",
)
@click.option("--hidden", default="300,300", show_default=True, callback=_hidden, help="Payne MLP hidden widths.")
@click.option(
    "--activation",
    type=click.Choice(["leaky_relu", "silu", "gelu"]),
    default="leaky_relu",
    show_default=True,
    help="Payne MLP activation: leaky_relu as published (piecewise linear), or a smooth one for gradient-based fits.",
)
@click.option(
    "--init", "init", default=None, help="Start from this trained model (fine-tuning): a model directory or 'default'."
)
@click.option(
    "--freeze",
    multiple=True,
    help="Parameter groups kept fixed when fine-tuning (TP: embedding, blocks, head; Payne: hidden, output).",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Wall-clock budget (counted across resumed runs).",
)
@click.option("--max-steps", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option(
    "--schedule",
    type=click.Choice(["steps", "budget"]),  # emulators.training.SCHEDULES
    default="steps",
    show_default=True,
    help="Learning-rate schedule: steps = warm-up, cosine decay over --max-steps; budget = warm-up, the peak rate, "
    "then cosine decay over the last --decay-fraction of the steps --max-minutes allows (measured while training), "
    "so the rate has decayed when the time is up (for long runs; benchmarks/budget_schedule.py).",
)
@click.option(
    "--decay-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.2,
    show_default=True,
    help="With --schedule budget: the last fraction of the run over which the learning rate decays (1 = all of it).",
)
@click.option(
    "--precision",
    type=click.Choice(["float32", "bfloat16"]),  # emulators.training.PRECISIONS
    default="float32",
    show_default=True,
    help="Operands of the training step's matrix products: bfloat16 = mixed precision (products accumulate, weights "
    "and loss stay in float32; the model is float32): faster where the hardware has bfloat16 matrix units (AMX, "
    "tensor cores). See benchmarks/train_step.py.",
)
@click.option(
    "--lr-scaling",
    type=click.Choice(["standard", "mup"]),  # emulators.training.LR_SCALINGS
    default="standard",
    show_default=True,
    help="mup: width transfer (TransformerPayne): --lr is the rate for --base-width; wider networks' matrices learn "
    "at base/width of it, so a rate tuned on a narrow network carries over (benchmarks/width_transfer.py).",
)
@click.option(
    "--base-width",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="With --lr-scaling mup: the width --lr was tuned at.",
)
@click.option(
    "--dim",
    type=click.IntRange(min=32),
    default=None,
    help="TransformerPayne width instead of the preset's (heads of 32: a multiple of 32).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate [default 1e-3; use lower for fine-tuning].",
)
@click.option("--loss", type=click.Choice(["mse", "l1"]), default="mse", show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "radam"]), default="adamw", show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--batch-spectra", type=click.IntRange(min=1), default=None, help="Spectra per step [TP 32, Payne 128].")
@click.option(
    "--batch-pixels",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Random pixels per spectrum per step (TP).",
)
@click.option(
    "--wavelengths",
    type=click.Choice(["auto", "pixels", "instrument", "continuous"]),  # emulators.training.WAVELENGTH_MODES
    default="auto",
    show_default=True,
    help="Where the loss is taken: continuous = anywhere between pixels (TP; needs a grid made with --oversample 2 to "
    "be exact), instrument = the instrument's pixels of an oversampled grid, pixels = every grid column; auto = "
    "continuous for TP and instrument for the Payne on an oversampled grid, else pixels.",
)
@click.option("--validate-every", type=click.IntRange(min=1), default=200, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Validations without improvement before stopping (0 = never stop early).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Model directory (rerun with the same -o to resume).",
)
def train(
    grid_path,
    model,
    preset,
    hidden,
    activation,
    init,
    freeze,
    max_minutes,
    max_steps,
    schedule,
    decay_fraction,
    precision,
    lr_scaling,
    base_width,
    dim,
    lr,
    loss,
    optimizer,
    warmup_steps,
    batch_spectra,
    batch_pixels,
    wavelengths,
    validate_every,
    patience,
    seed,
    quiet,
    output,
):
    """Train an emulator on GRID; write the model (weights.eqx + model.json) to OUTPUT.

    Checkpoints go to OUTPUT/checkpoint/; a killed run resumes when rerun with the same arguments.
    Prints the held-out (test split) MAE and MSE at the end.
    """
    from ..emulators.training import TrainConfig
    from ..emulators.training import train as run_training

    if dim is not None and dim % 32:
        raise click.BadParameter(f"{dim} is not a multiple of 32 (the head size)", param_hint="--dim")
    cfg = TrainConfig(
        model=model,
        preset=preset,
        overrides={} if dim is None else {"dim": dim, "n_heads": dim // 32},
        hidden=hidden,
        activation=activation,
        loss=loss,
        optimizer=optimizer,
        learning_rate=lr,
        warmup_steps=warmup_steps,
        max_steps=max_steps,
        schedule=schedule,
        decay_fraction=decay_fraction,
        precision=precision,
        lr_scaling=lr_scaling,
        base_width=base_width,
        batch_spectra=batch_spectra,
        batch_pixels=batch_pixels,
        wavelengths=wavelengths,
        validate_every=validate_every,
        patience=patience or None,
        max_minutes=max_minutes,
        seed=seed,
        freeze=tuple(freeze),
        progress=not quiet,
    )
    result = run_training(list(grid_path), output, cfg, init=init)
    m = result.metrics
    click.echo(
        f"stopped: {result.stop_reason} after {m.get('steps')} steps ({m.get('elapsed_s')} s); best validation MAE {m.get('best_val_mae'):.4g}"
    )
    click.echo(f"held-out test ({m['n_spectra']} spectra): MAE={m['mae']:.4g} MSE={m['mse']:.4g} p99={m['p99']:.4g}")
    if "between_pixel_ratio" in m:
        click.echo(
            f"  at the instrument's pixels MAE={m['mae_on_pixels']:.4g}, between them {m['mae_between_pixels']:.4g} "
            f"(ratio {m['between_pixel_ratio']:.2f})"
        )
    click.echo(f"model written to {output}")
