"""``stellarinf fit --joint``: the joint fit of many spectra sharing nuisances (:func:`stellarinf.fit_joint`).

Writes ``OUT.nc`` (InferenceData with a ``star`` dimension), ``OUT_stars.fits/.csv`` (one row per star) and
``OUT_shared.fits/.csv`` (one row per shared value) as one set. Exit codes as ``stellarinf fit``: 3 bad input,
4 flagged unreliable (R-hat, ESS, divergences) unless ``--allow-unreliable``.
"""

from __future__ import annotations

import click

from ..pipeline import EXIT_UNRELIABLE


def run_joint(spectra, kw: dict, share, groups, out, echo, *, quiet: bool, allow_unreliable: bool) -> None:
    """Call :func:`stellarinf.fit_joint` with the options of ``stellarinf fit`` (``kw``), write and print."""
    from ..joint_pipeline import fit_joint

    keys = None
    if groups:
        keys = [g.strip() for g in str(groups).split(",")]
    kw = {k: v for k, v in kw.items() if k != "sampler" or v is not None}
    result = fit_joint(list(spectra), share=tuple(share), groups=keys, progress=not quiet, log=echo, **kw)
    paths = result.write(out)
    if not quiet:
        click.echo("\n".join(result.shared.pformat(max_lines=-1, max_width=-1)))
        cols = ["star"] + [c for n in result.problem.star_names for c in (n, f"{n}_err")] + ["r_hat_max"]
        click.echo("\n".join(result.stars[cols].pformat(max_lines=-1, max_width=-1)))
    echo(f"run {result.run_id}: wrote {', '.join(str(p) for p in paths)}")
    if result.unreliable:
        lines = ["the joint result is unreliable:"] + [f"  - {r}" for r in result.unreliable]
        lines += ["what to do next:"] + [f"  - {a}" for a in result.diagnostics["advice"]]
        lines.append("the files are written; pass --allow-unreliable to accept them with exit code 0")
        if allow_unreliable:
            echo("warning: " + "\n".join(lines))
        else:
            raise _Unreliable("\n".join(lines))


class _Unreliable(click.ClickException):
    exit_code = EXIT_UNRELIABLE
