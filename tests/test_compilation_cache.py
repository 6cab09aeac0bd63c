"""The persistent compilation cache every ``stellarinf`` command turns on (``stellarinf.enable_compilation_cache``):
where it goes, that a later process finds what an earlier one compiled, and that a user's choice is respected."""

import os
import subprocess
import sys

SCRIPT = """
import jax, jax.numpy as jnp, stellarinf
stellarinf.enable_compilation_cache(min_compile_seconds=0.0)
print("DIR", jax.config.jax_compilation_cache_dir)
f = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T + jnp.tanh(x).sum())
f(jnp.ones((64, 64))).block_until_ready()
import subprocess, sys  # a process started from here (as fit-catalog's Dask workers) inherits the folder
child = "import jax; print(jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)"
print("CHILD", subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout.strip())
"""


def _run(tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "STELLARINF_"))}
    base.update(STELLARINF_CACHE=str(tmp_path / "cache"), JAX_PLATFORMS="cpu", **env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=base, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    said = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("DIR ", "CHILD ")))
    return said["DIR"], said["CHILD"]  # the folder here, and (folder, size bound) in a process started from here


def _entries(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_cache_goes_to_stellarinf_cache_and_is_reused(tmp_path):
    folder = tmp_path / "cache" / "jax"
    assert _run(tmp_path) == (str(folder), f"{folder} {4 * 2**30}")  # and a process it starts: the same bounded cache
    first = _entries(folder)
    assert first, "the compiled program was not written to the cache"
    _run(tmp_path)  # the same program in a new process: loaded, nothing new written
    assert _entries(folder) == first


def test_cache_off_and_a_folder_already_chosen_are_respected(tmp_path):
    assert _run(tmp_path, STELLARINF_COMPILATION_CACHE="off")[0] == "None"
    assert not (tmp_path / "cache").exists()
    own = tmp_path / "own"
    chosen = _run(tmp_path, JAX_COMPILATION_CACHE_DIR=str(own), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    assert chosen[0] == str(own)
    assert _entries(own) and not (tmp_path / "cache").exists()
