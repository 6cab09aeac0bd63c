"""Telluric absorption bands: where the Earth's atmosphere, not the star, sets the spectrum.

Ground-based spectra carry the O₂ A and B bands and H₂O bands; no stellar emulator models them, so a fit
that uses those pixels treats the Earth's lines as the star's. The bands below (vacuum Å, observer's
frame, padded by 1 Å for barycentric corrections up to ±30 km/s) are masked by default before a fit, and
the mask is reported. Weak H₂O lines outside them (≲ 2 % deep, e.g. 6470–6580 Å) are left to the robust
outlier clipping.
"""

from __future__ import annotations

import numpy as np

# (vacuum Å lower, upper, name): air values (O₂ B 6867–6884, O₂ A 7594–7700, H₂O 7160–7340 and 8130–8350 Å)
# converted to vacuum and padded. The A band is its head and R branch (7594–7621) *and* its P branch, whose
# saturated lines run to ~7666 Å and weaker ones (rotational levels up to J ≈ 46) to ~7700 Å air: masking the head
# alone left ~80 Å of Earth's lines in GALAH's IR arm, K I 7699 Å among them.
TELLURIC_BANDS: tuple[tuple[float, float, str], ...] = (
    (6868.0, 6887.0, "O2 B"),
    (7163.0, 7343.0, "H2O"),
    (7595.0, 7703.0, "O2 A"),
    (8131.0, 8353.0, "H2O"),
)


def telluric_mask(wavelength: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``(keep, bands)``: True where a pixel (vacuum Å, observer's frame) is outside every telluric band,
    and the names of the bands that were hit."""
    wl = np.asarray(wavelength, dtype=np.float64)
    keep = np.ones(wl.shape, bool)
    hit = []
    for lo, hi, name in TELLURIC_BANDS:
        inside = (wl >= lo) & (wl <= hi)
        if inside.any():
            keep &= ~inside
            hit.append(f"{name} {lo:.0f}-{hi:.0f} Å ({int(inside.sum())} px)")
    return keep, hit
