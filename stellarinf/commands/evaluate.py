"""``stellarinf evaluate``: accuracy of any emulator on any grid file."""

from __future__ import annotations

import click


@click.command(name="evaluate")
@click.option("--emulator", "emulator_name", required=True, help="Model directory, 'default' or 'default-payne'.")
@click.option(
    "--grid",
    "grid_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Grid file (HDF5) with spectra to compare against.",
)
@click.option("--max-spectra", type=click.IntRange(min=1), default=None, help="Use only the first N spectra.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the metrics as JSON here.")
def evaluate(emulator_name, grid_path, max_spectra, batch_size, quiet, output):
    """MAE, MSE and 99th-percentile absolute error of EMULATOR on the spectra of GRID.

    JSON keys: mae, mse, p99, n_spectra (plus line/continuum split and provenance; on a grid made with
    --oversample, the MAE at the instrument's pixels and between them).
    """
    from ..emulators.metrics import between_pixel_metrics, evaluate_emulator
    from ..emulators.registry import load_emulator
    from ..io.atomic import write_json_atomic
    from ..io.grid import GridFile

    emu = load_emulator(emulator_name)
    acc, _ = evaluate_emulator(emu, grid_path, batch_size=batch_size, max_spectra=max_spectra, progress=not quiet)
    with GridFile(grid_path) as gf:
        oversample = int(gf.metadata.get("oversample", 1))
    metrics = {
        **acc.result(),
        **between_pixel_metrics(acc, oversample),
        "emulator": str(emulator_name),
        "emulator_kind": emu.kind,
        "grid": str(grid_path),
    }
    click.echo(
        f"{metrics['n_spectra']} spectra × {metrics['n_pixels']} pixels: MAE={metrics['mae']:.4g} "
        f"MSE={metrics['mse']:.4g} p99={metrics['p99']:.4g}"
    )
    if "between_pixel_ratio" in metrics:
        click.echo(
            f"at the instrument's pixels MAE={metrics['mae_on_pixels']:.4g}, between them "
            f"{metrics['mae_between_pixels']:.4g} (ratio {metrics['between_pixel_ratio']:.2f})"
        )
    if output:
        write_json_atomic(output, metrics)
        click.echo(f"metrics written to {output}")
