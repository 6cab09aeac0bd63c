"""Validation tools: what tests, benchmarks and ``stellarinf error-model`` use to check the posterior machinery
against known truth. Nothing in :mod:`stellarinf.inference` imports this package (``tests/test_layers.py``).

- ``analytic``     :class:`AnalyticLineModel`: a cheap, deterministic, differentiable ``SpectrumModel`` (a test
                   double, not physics)
- ``mocks``        mock observed spectra with known truth: ``make_mock``, ``noiseless_flux``, ``random_truth``
- ``setups``       ready-made (model, pixels) set-ups: ``analytic_setup``, ``benchmark_setup``,
                   ``synthesizer_truth``, ``observed_wavelength``
- ``systematics``  the emulator's label-space systematics measured on noiseless synthesizer stars
                   (``measure_label_systematics``); stored in the model's metadata, read by inference as data
"""
