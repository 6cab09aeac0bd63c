"""Reference stars by name: the star types a survey planner asks about (``stellarinf crb --star solar-twin``).

One registry: the forecaster's ``--star`` names and the emulator-fidelity check's reference stars
(:data:`stellarinf.emulator_fidelity.REFERENCE_STARS`) both come from :data:`REFERENCE_STARS`. Labels not given
(abundance ratios) are 0 where the model's box allows; :func:`star_labels` fills and checks them against a model.
The values are typical of each class (the Sun: Prša et al. 2016, AJ 152, 41; the others: representative
Teff / log g / [Fe/H] of the class, with vmic from the relation of the class), not any single catalogued star.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import StellarinfError

REFERENCE_STARS: dict[str, dict[str, float]] = {
    "solar-twin": {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "vmic": 1.0},
    "metal-poor-turn-off": {"teff": 6200.0, "logg": 4.0, "feh": -1.5, "vmic": 1.4},
    "metal-poor-dwarf": {"teff": 5900.0, "logg": 4.0, "feh": -1.5, "vmic": 1.2},
    "k-dwarf": {"teff": 4800.0, "logg": 4.6, "feh": 0.0, "vmic": 0.8},
    "red-clump": {"teff": 4750.0, "logg": 2.4, "feh": 0.0, "vmic": 1.3},
    "cool-giant": {"teff": 4600.0, "logg": 2.3, "feh": -0.2, "vmic": 1.4},
    "metal-poor-giant": {"teff": 4600.0, "logg": 1.5, "feh": -1.8, "vmic": 1.8},
}
# [α/Fe] of each class, given to models with an [α/Fe] label (the halo's plateau +0.4, the thick disc's ~+0.3, the
# thin disc ~0; e.g. Bensby et al. 2014, A&A 562, A71)
REFERENCE_ALPHA: dict[str, float] = {
    "solar-twin": 0.0,
    "metal-poor-turn-off": 0.4,
    "metal-poor-dwarf": 0.3,
    "k-dwarf": 0.0,
    "red-clump": 0.0,
    "cool-giant": 0.05,
    "metal-poor-giant": 0.4,
}
DESCRIPTIONS = {
    "solar-twin": "the Sun",
    "metal-poor-turn-off": "halo turn-off star",
    "metal-poor-dwarf": "thick-disc / halo dwarf",
    "k-dwarf": "cool main-sequence star",
    "red-clump": "core-helium-burning giant",
    "cool-giant": "thin-disc red giant",
    "metal-poor-giant": "halo red giant",
}


class UnknownStarError(StellarinfError, ValueError):
    """A reference star name that is not in :data:`REFERENCE_STARS`."""


def reference_star(name: str, alpha: bool = False) -> dict[str, float]:
    """The labels of a reference star by name (a copy); with ``alpha`` its class's [α/Fe] as well."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if key not in REFERENCE_STARS:
        raise UnknownStarError(
            f"unknown reference star {name!r}; choose one of {', '.join(REFERENCE_STARS)}, or give the labels "
            "(--teff/--logg/--feh/--label NAME=VALUE)"
        )
    return {**REFERENCE_STARS[key], **({"alpha_fe": REFERENCE_ALPHA[key]} if alpha else {})}


def star_labels(
    star: str | Mapping[str, float], overrides: Mapping[str, float] | None = None, alpha: bool = False
) -> dict[str, float]:
    """A star's labels: a reference star by name (with its [α/Fe] for a model that has the label: ``alpha``) or a
    mapping, with ``overrides`` on top."""
    base = reference_star(star, alpha) if isinstance(star, str) else dict(star)
    base.update({k: float(v) for k, v in (overrides or {}).items()})
    return base
