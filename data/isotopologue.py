"""A diatomic isotopologue's lines derived from the lines of its neighbours (48TiO from 46, 47, 49 and 50TiO).

The pinned TiO list (linemake's, from Plez) has every titanium isotopologue but the main one, 48TiO (74 % of Ti).
Within the Born–Oppenheimer approximation a line's wavenumber and lower-level energy are smooth functions of the
reduced mass μ (vibrational terms scale as ρ = √(μ_ref/μ), rotational ones as ρ², Herzberg 1950, ch. III.2), and its
gf does not change (the source gives one transition the same log gf in every isotopologue). So a transition seen in
47TiO and 49TiO, which bracket 48TiO, and confirmed where the same line sits in 46TiO or 50TiO, gives 48TiO's line
by a quadratic in u = μ^(-1/2) − μ₄₈^(-1/2) through the three or four points, evaluated at u = 0.

Matching needs no quantum numbers: a candidate pair shares log gf to the source's 0.001 dex and lies within
``max_shift`` cm⁻¹ and ``max_elow_shift`` eV; it is kept only when a line of the same log gf sits where the pair,
extended linearly in u, puts it in an outer isotopologue (within ``tolerance`` cm⁻¹ plus a share of the pair's shift,
for the curvature). Each line is used at most once, best-confirmed pairs first. Lines of the bracketing isotopologues
that find no confirmed partner (near the source's strength cut, or at its wavelength ends) give no derived line: the
share of their strength is reported.

Pure numpy; used by ``build_tables.py --only tio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# atomic masses (u; AME 2020 via NIST): the TiO isotopologues' reduced masses
ATOMIC_MASS = {16: 15.99491462, 46: 45.95262772, 47: 46.95175879, 48: 47.94794198, 49: 48.94786568, 50: 49.94478689}


@dataclass(frozen=True)
class Lines:
    """One isotopologue's lines: vacuum wavelength (Å), lower-level energy (eV), log gf; shape (n,) each."""

    wavelength: np.ndarray
    elow: np.ndarray
    loggf: np.ndarray

    def __len__(self) -> int:
        return self.wavelength.size


@dataclass(frozen=True)
class Derived:
    """Derived lines of the target isotopologue and how they were made."""

    lines: Lines
    n_points: np.ndarray  # (n,) isotopologues each line's quadratic went through: 3 or 4
    strength_share: dict  # mass number (the bracketing two) -> share of Σ 10^(log gf − θ E) with a derived line


def reduced_mass_coordinate(partner: int, masses: dict[int, float] = ATOMIC_MASS, other: int = 16) -> float:
    """μ^(−1/2) of the diatomic ``partner``–``other`` (u^(−1/2)): the coordinate lines move in linearly to first order."""
    m1, m2 = masses[partner], masses[other]
    return float((m1 * m2 / (m1 + m2)) ** -0.5)


def _gf_key(loggf: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log gf (integer milli-dex) × 1e6 + wavenumber (cm⁻¹): sorted, lines of one log gf are contiguous by σ."""
    return np.rint(loggf * 1000.0).astype(np.int64) * 1e6 + sigma


@dataclass(frozen=True)
class _Index:
    """One isotopologue's lines keyed for same-gf searches: wavenumber σ (cm⁻¹) and log gf (milli-dex) per row, and
    the rows' order by :func:`_gf_key` with the sorted keys."""

    sigma: np.ndarray
    g: np.ndarray
    order: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, lines: Lines) -> _Index:
        sigma = 1e8 / lines.wavelength
        key = _gf_key(lines.loggf, sigma)
        order = np.argsort(key, kind="stable")
        return cls(sigma, np.rint(lines.loggf * 1000.0).astype(np.int64), order, key[order])

    def nearest(self, key: np.ndarray) -> np.ndarray:
        """Row of the line whose key is nearest each of ``key`` (the same log gf where it has one near enough)."""
        hi = np.clip(np.searchsorted(self.key, key), 1, max(len(self.key) - 1, 1))
        lo = hi - 1
        return np.where(np.abs(self.key[lo] - key) <= np.abs(self.key[hi] - key), self.order[lo], self.order[hi])


def derive_isotopologue(
    sources: dict[int, Lines],
    target: int,
    *,
    max_shift: float = 80.0,
    max_elow_shift: float = 0.08,
    tolerance: float = 0.03,
    curvature_share: float = 0.01,
    theta: float = 5040.0 / 4000.0,
) -> Derived:
    """Lines of isotopologue ``target`` (mass number of the varying atom) from ``sources`` (mass number → lines).

    The two source isotopologues nearest below and above ``target`` form the pairs; the others confirm them.
    ``theta`` (5040/T) weighs lines by 10^(log gf − θ E_low) for the reported strength shares.
    """
    lower = max(a for a in sources if a < target)
    upper = min(a for a in sources if a > target)
    outer = sorted(a for a in sources if a not in (lower, upper))
    if not outer:
        raise ValueError("derive_isotopologue needs at least one isotopologue besides the two that bracket the target")
    u = {a: reduced_mass_coordinate(a) - reduced_mass_coordinate(target) for a in sources}
    index = {a: _Index.of(sources[a]) for a in sources}
    lo, hi = index[lower], index[upper]

    # candidate pairs: same log gf, shift within max_shift (a sorted-key window search, then the E_low cut)
    key_lo = _gf_key(sources[lower].loggf, lo.sigma)
    start = np.searchsorted(hi.key, key_lo - max_shift)
    stop = np.searchsorted(hi.key, key_lo + max_shift)
    i = np.repeat(np.arange(len(sources[lower])), stop - start)
    j = hi.order[np.concatenate([np.arange(a, b) for a, b in zip(start, stop)]) if i.size else np.zeros(0, int)]
    keep = np.abs(sources[upper].elow[j] - sources[lower].elow[i]) < max_elow_shift
    i, j = i[keep], j[keep]
    s_i, s_j = lo.sigma[i], hi.sigma[j]
    e_i, e_j = sources[lower].elow[i], sources[upper].elow[j]

    # confirmation in each outer isotopologue: the nearest same-gf line to the pair's linear extension
    found = {}
    n_conf = np.zeros(i.size, int)
    score = np.zeros(i.size)
    for a in outer:
        f = (u[a] - u[lower]) / (u[upper] - u[lower])
        pred = s_i + f * (s_j - s_i)
        cand = index[a].nearest(_gf_key(sources[lower].loggf[i], pred))
        resid = np.where(index[a].g[cand] == lo.g[i], index[a].sigma[cand] - pred, np.inf)
        de = np.abs(sources[a].elow[cand] - (e_i + f * (e_j - e_i)))
        ok = (np.abs(resid) < tolerance + curvature_share * np.abs(s_j - s_i)) & (de < 0.02)
        found[a] = np.where(ok, cand, -1)
        n_conf += ok
        score += np.where(ok, np.abs(resid), 0.0)

    # one line per partner: most confirmations first, then the smallest residual
    good = np.flatnonzero(n_conf > 0)
    good = good[np.lexsort((score[good], -n_conf[good]))]
    used = {a: np.zeros(len(sources[a]), bool) for a in sources}
    chosen = []
    for p in good:
        rows = {lower: i[p], upper: j[p], **{a: found[a][p] for a in outer if found[a][p] >= 0}}
        if any(used[a][r] for a, r in rows.items()):
            continue
        for a, r in rows.items():
            used[a][r] = True
        chosen.append(p)
    chosen = np.asarray(chosen, int)

    # the quadratic in u through the pair and its confirmations, at u = 0
    cols = [lower, upper, *outer]
    idx = np.stack([i[chosen], j[chosen], *[found[a][chosen] for a in outer]])  # (n_iso, n)
    present = idx >= 0
    us = np.array([u[a] for a in cols])[:, None]  # (n_iso, 1): the same for every line
    sig_pts = np.stack([index[a].sigma[np.maximum(r, 0)] for a, r in zip(cols, idx)])
    e_pts = np.stack([sources[a].elow[np.maximum(r, 0)] for a, r in zip(cols, idx)])
    sigma0 = _quadratic_at_zero(us, sig_pts, present)
    elow0 = _quadratic_at_zero(us, e_pts, present)
    derived = Lines(1e8 / sigma0, elow0, sources[lower].loggf[i[chosen]])
    order = np.argsort(derived.wavelength, kind="stable")

    def share(a):
        s = 10.0 ** (sources[a].loggf - theta * sources[a].elow)
        return float(s[used[a]].sum() / s.sum()) if s.size else 1.0

    return Derived(
        lines=Lines(derived.wavelength[order], derived.elow[order], derived.loggf[order]),
        n_points=present.sum(axis=0)[order],
        strength_share={a: share(a) for a in (lower, upper)},
    )


def _quadratic_at_zero(u: np.ndarray, y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per column, the value at u = 0 of the least-squares quadratic through the present points (3 or 4 of them);
    ``y`` and ``present`` (n_iso, n), ``u`` (n_iso, n) or (n_iso, 1).

    Centred on the column's mean so the 3 × 3 normal equations stay well conditioned at |u| ~ 1e-3."""
    w = present.astype(float)
    n = w.sum(axis=0)
    ub = (w * u).sum(axis=0) / n
    yb = (w * y).sum(axis=0) / n
    du, dy = (u - ub) * w, (y - yb) * w
    m = np.stack(
        [np.stack([(du**4).sum(0), (du**3).sum(0), (du**2).sum(0)], -1),
         np.stack([(du**3).sum(0), (du**2).sum(0), du.sum(0)], -1),
         np.stack([(du**2).sum(0), du.sum(0), n], -1)],
        -2,
    )  # fmt: skip
    rhs = np.stack([(du**2 * dy).sum(0), (du * dy).sum(0), dy.sum(0)], -1)
    a, b, c = np.moveaxis(np.linalg.solve(m, rhs[..., None])[..., 0], -1, 0)
    z = -ub
    return yb + a * z**2 + b * z + c


def compare_with_source(derived: Lines, source: Lines, *, tolerance: float = 0.005, theta: float = 5040.0 / 4000.0):
    """How well ``derived`` lines reproduce an isotopologue's ``source`` lines (the method's check where the answer
    is known): each derived line against the nearest source line of the same log gf.

    Returns a dict: derived and source line counts, |Δλ| median / 99th percentile (mÅ) and |ΔE_low| 99th percentile
    (eV) of the matched, the share of derived lines with no source line within ``tolerance`` Å, and the share of the
    source's lines and of its strength Σ 10^(log gf − θ E_low) that a derived line reproduces."""
    index = _Index.of(source)
    near = index.nearest(_gf_key(derived.loggf, 1e8 / derived.wavelength))
    same = index.g[near] == np.rint(derived.loggf * 1000.0).astype(np.int64)
    dl = np.where(same, np.abs(derived.wavelength - source.wavelength[near]), np.inf)
    hit = dl < tolerance
    found = np.zeros(len(source), bool)
    found[near[hit]] = True
    strength = 10.0 ** (source.loggf - theta * source.elow)
    de = np.abs(derived.elow - source.elow[near])[hit]

    def pct(x, q, scale, digits):  # None where nothing matched
        return round(float(np.percentile(x, q) * scale), digits) if x.size else None

    return {
        "derived_lines": int(len(derived)),
        "source_lines": int(len(source)),
        "dlambda_mA_p50": pct(dl[hit], 50, 1e3, 3),
        "dlambda_mA_p99": pct(dl[hit], 99, 1e3, 3),
        "delow_eV_p99": pct(de, 99, 1.0, 5),
        "derived_without_source_line": round(float(1.0 - hit.mean()), 5),
        "source_lines_reproduced": round(float(found.mean()), 4),
        "source_strength_reproduced": round(float(strength[found].sum() / strength.sum()), 4),
    }
