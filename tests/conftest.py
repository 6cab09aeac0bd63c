"""Test session setup: float64 on, as every stellarinf entry point does (``stellarinf.enable_float64``).

Tests build observation models, problems and synthesizer inputs directly, below the entry points that switch
float64 on themselves; ``import stellarinf`` no longer does it as a side effect."""

import stellarinf

stellarinf.enable_float64()
