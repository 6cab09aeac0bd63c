"""Emulators of normalised stellar spectra behind one interface (see :mod:`stellarinf.emulators.base`).

- :class:`Emulator` wraps a trained :class:`TransformerPayne` or :class:`PayneMLP` with its training box,
  wavelength range and emulator-error table; it satisfies :class:`SpectrumModel`.
- :func:`load_emulator` (``"default"``, ``"default-payne"`` or a model directory), :func:`save_emulator`.
- :func:`train` / :class:`TrainConfig` train, resume and fine-tune; :mod:`.metrics` measures accuracy.
- :data:`NETWORK_KINDS` (:mod:`.kinds`): the one table of network kinds; adding a kind is its module plus one entry.
"""

from .base import SpectrumModel, check_inputs, check_wavelength
from .emulator import Emulator, flux_batch
from .kinds import NETWORK_KINDS, NetworkKind
from .metrics import evaluate_emulator, flux_metrics
from .model_io import load_model_directory, save_emulator
from .payne import PayneConfig, PayneMLP
from .registry import load_emulator
from .training import TrainConfig, TrainResult, train
from .transformer_payne import PRESETS, TransformerPayne, TransformerPayneConfig, preset_config

__all__ = [
    "SpectrumModel",
    "check_inputs",
    "check_wavelength",
    "Emulator",
    "flux_batch",
    "NETWORK_KINDS",
    "NetworkKind",
    "evaluate_emulator",
    "flux_metrics",
    "load_model_directory",
    "save_emulator",
    "PayneConfig",
    "PayneMLP",
    "load_emulator",
    "TrainConfig",
    "TrainResult",
    "train",
    "PRESETS",
    "TransformerPayne",
    "TransformerPayneConfig",
    "preset_config",
]
