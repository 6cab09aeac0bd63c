"""Test session setup: float64 on, as every stellarinf entry point does (``stellarinf.enable_float64``).

Tests build observation models, problems and synthesizer inputs directly, below the entry points that switch
float64 on themselves; ``import stellarinf`` no longer does it as a side effect.

Each test module's compiled programs are dropped when it ends: one process compiling the whole suite's
thousands of XLA programs crashed inside XLA's compiler (segmentation fault / abort at ~65 % of the suite,
in different tests each time), consistent with the process running out of memory mappings (vm.max_map_count
65,530 here) as every compiled program keeps its code mapped.
"""

import jax
import pytest

import stellarinf

stellarinf.enable_float64()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    jax.clear_caches()
