"""File formats: grid files (HDF5), observed spectra, model files, atomic writes."""
