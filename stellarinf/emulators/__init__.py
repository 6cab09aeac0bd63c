"""Emulators of normalised stellar spectra behind one interface (see :mod:`stellarinf.emulators.base`)."""
