"""Where stellarinf finds its shipped data (physics tables, default models, demo spectrum) and keeps its caches.

The ``data/`` folder sits beside the ``stellarinf/`` package in the repository (the package is
installed in editable mode, as the README says); ``STELLARINF_DATA`` overrides the location. Caches (line selections,
compiled programs) live in ``~/.cache/stellarinf`` unless ``STELLARINF_CACHE`` names another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StellarinfError


def data_dir() -> Path:
    """The data folder; raises a clear error if it cannot be found."""
    env = os.environ.get("STELLARINF_DATA")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "data"
    if not path.is_dir():
        raise StellarinfError(
            f"stellarinf data folder not found at {path}; install from a clone with `pip install -e .` "
            "or set STELLARINF_DATA to the repository's data/ folder"
        )
    return path


def data_file(*parts: str) -> Path:
    """A file inside the data folder; raises a clear error naming how to regenerate it if missing."""
    path = data_dir().joinpath(*parts)
    if not path.exists():
        raise StellarinfError(
            f"shipped data file {path} is missing; regenerate it with `python data/build_tables.py` or restore it from git"
        )
    return path


def cache_dir() -> Path:
    """The folder of stellarinf's caches: ``$STELLARINF_CACHE`` or ``~/.cache/stellarinf`` (not created here)."""
    return Path(os.environ.get("STELLARINF_CACHE") or Path.home() / ".cache" / "stellarinf")
