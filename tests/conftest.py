"""Test session setup: float64 on, as every stellarinf entry point does (``stellarinf.enable_float64``).

Tests build observation models, problems and synthesizer inputs directly, below the entry points that switch
float64 on themselves; ``import stellarinf`` no longer does it as a side effect.

Each test module's compiled programs are dropped when it ends: one process compiling the whole suite's
thousands of XLA programs crashed inside XLA's compiler (segmentation fault / abort at ~65 % of the suite,
in different tests each time), consistent with the process running out of memory mappings (vm.max_map_count
65,530 here) as every compiled program keeps its code mapped.

Compiling is most of the suite's time (the MAP, Laplace and NUTS programs of one tiny analytic model take
seconds to compile and milliseconds to run), and many modules compile the very same programs. So the session
keeps JAX's persistent compilation cache in a fresh temporary folder (removed at exit; one already set in
``JAX_COMPILATION_CACHE_DIR`` is used as it is): a program compiled once is loaded, not compiled again, by later
modules and by the CLI subprocesses the tests start (they inherit the variables). The cache is keyed by the
program itself (its HLO, compile options, JAX version and backend), so a changed program is compiled afresh;
what the tests run and assert is unchanged. Under pytest-xdist (pyproject's addopts run two processes) the
controller sets the variable before it starts its workers, so they share one cache folder too.
"""

import atexit
import os
import shutil
import tempfile

if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _cache_dir = tempfile.mkdtemp(prefix="stellarinf-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    # every program, the one-operation ones of eager code too: each module compiles hundreds of those again after
    # jax.clear_caches() (measured under load: 280 small ones took 38 s to compile again, 12 s to load)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# stellarinf's own caches (line selections) in a fresh folder too, shared by the workers and the CLI subprocesses the
# same way: the tests neither read nor fill the user's ~/.cache/stellarinf, and a run here costs what it costs on a
# CI machine, which starts with none (the suite computes 42 line selections, 2-3.5 s each: about a minute of its
# time that a warm ~/.cache hid)
if not os.environ.get("STELLARINF_CACHE"):
    _stellarinf_cache = tempfile.mkdtemp(prefix="stellarinf-tests-cache-")
    atexit.register(shutil.rmtree, _stellarinf_cache, ignore_errors=True)
    os.environ["STELLARINF_CACHE"] = _stellarinf_cache


def _default_xla_flag(name: str, value: str) -> None:
    """``--name=value`` added to XLA_FLAGS unless the flag is already given there."""
    flags = os.environ.get("XLA_FLAGS", "")
    if f"--{name}" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{name}={value}".strip()


# LLVM at -O1 instead of XLA's default -O3 for the CPU code, here and in the CLI subprocesses (they inherit it): the
# HLO passes (fusion, layout, algebraic simplification) are the same, only the backend's machine-code optimisation is
# lighter. One tiny Laplace fit, one core: 56 s -> 44 s (compiling is most of it); the NUTS/MCLMC module, whose
# chains run long enough for code speed to matter, 114 s -> 99 s. (-O0 compiled faster still, 56 -> 40 s, but ran
# the samplers twice as slowly: 114 -> 228 s.) A level already given in XLA_FLAGS is kept.
_default_xla_flag("xla_backend_optimization_level", "1")
# XLA's older elemental emitters for CPU fusions instead of its MLIR fusion emitters: they compile faster, and the
# suite is mostly compiling. Same machine, caches empty: the suite 1,280 s -> 1,004 s; the README example (a cold
# default-payne laplace-is fit, one core, both side by side) compiled its programs in 40 s instead of 55 s and ran
# them 6 s slower, 79 s instead of 88 s in all. Not for users' runs, whose long sampling and catalogues run more
# than they compile.
_default_xla_flag("xla_cpu_use_fusion_emitters", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

import stellarinf  # noqa: E402

stellarinf.enable_float64()
# JAX reads the variables when it is first imported, which a plugin may have done before this file ran
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update(
    "jax_persistent_cache_min_compile_time_secs",
    float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)),
)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    yield
    jax.clear_caches()
