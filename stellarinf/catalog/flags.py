"""The catalogue's ``flags`` bitmask: one integer per star (and ``<label>_flags`` per label), the bits defined here once.

The bits are derived from the flag words the fit pipeline already writes (:func:`stellarinf.fit_spectrum`'s
summary ``Table``: the global words in ``meta["FLAGS"]``, the per-label words in its ``flags`` column; their
meaning and what to do about them: :data:`stellarinf.inference.results.FLAG_ADVICE`), plus two of the catalogue's
own: ``failed`` (no result: the reason is in the row's ``error``) and ``unreliable`` (the rule of
:func:`stellarinf.pipeline.diagnose`: Pareto k, divergences or R-hat; do not use the numbers as they are).

A star's ``flags`` is the OR of its global words and of every label's words; ``<label>_flags`` holds that label's
words only. Test a bit with ``row["flags"] & FLAG_BITS["chi2"]`` (Python) or ``(flags & 8) != 0`` (SQL, TOPCAT).
"""

from __future__ import annotations

from collections.abc import Iterable

# name -> bit number; never renumber a bit (catalogues written earlier keep their meaning): add new ones at the end
FLAG_BIT_NUMBERS: dict[str, int] = {
    "failed": 0,  # the star was not fitted (unreadable file, no overlap with the model, NaN flux, a fit failure)
    "unreliable": 1,  # pareto_k, divergences or R-hat: the pipeline's rule for "do not use as it is"
    # global words (summary meta FLAGS)
    "divergences": 2,
    "chi2": 3,
    "hessian": 4,
    "one_chain": 5,
    "pareto_k": 6,
    "air_vacuum": 7,
    "tree_depth": 8,
    # per-label words (summary column flags)
    "rhat": 9,
    "ess": 10,
    "no_information": 11,
    "edge_low": 12,
    "edge_high": 13,
    "fidelity": 14,
    "other": 15,  # a word this version does not know (a newer pipeline's): see the per-star JSON for the words
    "no_tio": 16,  # global: a star where TiO bands matter, fitted through physics without TiO
    "conservative": 17,  # global: reduced chi2 low, the plain chi2 noise-like or above: the model errors overstate
    "traded": 18,  # v sin i and v macro: the spectrum measures their combination only (the row's vbroad)
    "vbroad_rhat": 19,  # global: the chains disagree on that combination (R-hat > 1.01)
}
FLAG_BITS: dict[str, int] = {name: 1 << bit for name, bit in FLAG_BIT_NUMBERS.items()}

FLAG_DESCRIPTIONS: dict[str, str] = {
    "failed": "not fitted; the reason is in the row's error",
    "unreliable": "Pareto k, divergences or R-hat flagged: do not use the numbers as they are",
    "divergences": "the sampler hit divergent transitions",
    "chi2": "reduced chi2 far from 1",
    "hessian": "the curvature at the best fit is not positive definite",
    "one_chain": "one chain cannot show convergence",
    "pareto_k": "importance weights unreliable (laplace-is)",
    "air_vacuum": "the RV sits at the air/vacuum confusion shift",
    "tree_depth": "NUTS trees hit their maximum depth",
    "rhat": "a label's chains disagree (R-hat > 1.01)",
    "ess": "a label has too few effective draws",
    "no_information": "a label's posterior is about as wide as its prior",
    "edge_low": "a label's posterior piles up at the lower box edge",
    "edge_high": "a label's posterior piles up at the upper box edge",
    "fidelity": "the emulator over-claims on a label near this star",
    "other": "a flag word this version does not know",
    "no_tio": "TiO bands shape this star's spectrum and the model has no TiO: labels can be biased",
    "conservative": "the model's error terms exceed the residuals (plain chi2 noise-like or above): the sd are wider than needed",
    "traded": "v sin i and v macro trade for each other: quote vbroad, their combination (each alone is loosely measured)",
    "vbroad_rhat": "the chains disagree on vbroad, the combined v sin i and v macro broadening (R-hat > 1.01)",
}


def words_to_bits(words: Iterable[str]) -> int:
    """The bitmask of flag words (empty words and ``none`` ignored; unknown words set ``other``)."""
    mask = 0
    for word in words:
        word = str(word).strip()
        if word and word != "none":
            mask |= FLAG_BITS.get(word, FLAG_BITS["other"])
    return mask


def split_words(text: str) -> list[str]:
    """``"a,b"`` → ``["a", "b"]`` (a summary's flag text)."""
    return [w for w in str(text or "").split(",") if w.strip() and w.strip() != "none"]


def bits_to_words(mask: int) -> list[str]:
    """The names of the bits set in ``mask``, in bit order."""
    return [name for name, bit in FLAG_BITS.items() if int(mask) & bit]


def header_cards() -> dict[str, str]:
    """``FLAGB00 = 'failed: ...'`` and so on (bit number, two digits): the bits, as FITS header cards."""
    return {f"FLAGB{n:02d}": f"{name}: {FLAG_DESCRIPTIONS[name]}" for name, n in FLAG_BIT_NUMBERS.items()}
