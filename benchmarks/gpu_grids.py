"""Pack a grid file small enough to travel to a lent GPU machine, and unpack it there.

A device call carries at most 64 MiB of working tree, and one broad-domain grid of 2,048 rows is 87 MB
(float32 flux and continuum at 5,507 pixels). Packed (about 7 MB for such a grid, so four arms travel in one call):

- normalised flux quantised in steps of ``--step`` (default ``FLUX_STEP`` = 5e-5: rms error 1.4e-5, two orders
  below the emulators' errors), coded as differences along wavelength (neighbouring pixels of a spectrum
  sampled twice per pixel are close), zig-zag mapped to unsigned integers, byte-shuffled and lzma-compressed;
- the continuum, which is smooth, as its logarithm every ``CONT_STEP`` pixels (and the last), interpolated
  back linearly in log (≲1e-6 relative on the broad grids);
- labels, wavelengths and every attribute unchanged, so the unpacked file is an ordinary grid file.

``--pca K`` (fortieth session; for the 10,240-row grids, which the differences code to 27 MB (red, step 2e-4) and
37 MB (blue, even at step 5e-4)):
the flux as the mean spectrum plus K principal components (learned on the first ``PCA_ROWS`` rows; coefficients
quantised in steps of ``COEF_STEP``) plus the residual quantised in steps of ``--step`` and coded as above without
the differences (it is noise-like). The residual absorbs every rounding, so the error is still at most step/2. On the
broad red grid at step 2e-4, K = 256: 14.7 MB with its labels (27 MB coded as differences; 63 s to pack, 2 s to
unpack; max error 1.0e-4, rms 4.7e-5).

    python benchmarks/gpu_grids.py pack IN.h5 OUT.h5 [--rows N] [--step S] [--no-continuum] [--pca K]
    python benchmarks/gpu_grids.py unpack IN.h5 OUT.h5

No pickle; h5py only (no stellarinf import, so it runs before the package is installed there).
"""

from __future__ import annotations

import argparse
import lzma
import os
from pathlib import Path

import h5py
import numpy as np

FLUX_STEP = 5e-5
CONT_STEP = 32
COEF_STEP = 1e-3  # principal-component coefficients (unit-norm components: the residual takes the rounding)
PCA_ROWS = 4096  # rows the components are learned from
PACKED = "stellarinf-grid-packed-2"


def _copy_attrs(src, dst) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def _cont_index(n_pix: int) -> np.ndarray:
    idx = np.arange(0, n_pix, CONT_STEP)
    return idx if idx[-1] == n_pix - 1 else np.append(idx, n_pix - 1)


def encode_ints(d: np.ndarray) -> tuple[np.ndarray, str]:
    """Signed integers, zig-zag mapped (small of either sign → small unsigned), byte-shuffled, lzma-compressed:
    (bytes as uint8, the unsigned dtype)."""
    z = (d << 1) ^ (d >> 63)
    dtype = "uint16" if z.max() <= np.iinfo(np.uint16).max else "uint32"
    raw = z.astype(dtype)
    shuffled = np.ascontiguousarray(raw.view(np.uint8).reshape(-1, raw.itemsize).T)
    return np.frombuffer(lzma.compress(shuffled.tobytes(), preset=6), dtype=np.uint8), dtype


def decode_ints(blob: np.ndarray, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(lzma.decompress(blob.tobytes()), dtype=np.uint8).reshape(size, -1)
    z = np.ascontiguousarray(planes.T).view(dtype).reshape(shape).astype(np.int64)
    return (z >> 1) ^ -(z & 1)


def encode_flux(flux: np.ndarray, step: float) -> tuple[np.ndarray, str]:
    """Quantise to ``step``, difference along wavelength, then :func:`encode_ints`."""
    q = np.round(flux.astype(np.float64) / step).astype(np.int64)
    return encode_ints(np.diff(q, axis=1, prepend=0))


def read_ints(d) -> np.ndarray:
    """The integers a packed dataset holds (:func:`encode_ints`, its ``packed_dtype`` and ``packed_shape``)."""
    return decode_ints(d[:], str(d.attrs["packed_dtype"]), tuple(int(v) for v in d.attrs["packed_shape"]))


def pca_parts(f: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For float64 flux ``f``: (mean spectrum float64, k unit-norm components float32, integer coefficients in steps
    of ``COEF_STEP``)."""
    mean = f[:PCA_ROWS].mean(axis=0)
    _, _, vt = np.linalg.svd((f[:PCA_ROWS] - mean).astype(np.float32), full_matrices=False)
    basis = vt[:k].astype(np.float32)
    coef = np.round((f - mean) @ basis.astype(np.float64).T / COEF_STEP).astype(np.int64)
    return mean, basis, coef


def pca_model(mean: np.ndarray, basis: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """The flux the components give (the same arithmetic when packing and unpacking)."""
    return mean + (coef * COEF_STEP) @ basis.astype(np.float64)


def pack(
    src: Path, dst: Path, rows: int | None = None, step: float = FLUX_STEP, continuum: bool = True, pca: int = 0
) -> None:
    with h5py.File(src, "r") as f, h5py.File(str(dst) + ".tmp", "w") as g:
        n = f["flux"].shape[0] if rows is None else min(rows, f["flux"].shape[0])
        flux = f["flux"][:n]
        if not np.all(np.isfinite(flux)):
            raise SystemExit(f"{src}: flux has non-finite values; fix the grid before packing it")
        _copy_attrs(f, g)
        g.attrs["packed"] = PACKED
        for name in ("labels", "wavelength"):
            d = g.create_dataset(name, data=f[name][:n] if name == "labels" else f[name][:])
            _copy_attrs(f[name], d)
        if pca:
            f64 = flux.astype(np.float64)
            mean, basis, coef = pca_parts(f64, min(pca, *flux.shape))
            g.create_dataset("pca_mean", data=mean)
            g.create_dataset("pca_basis", data=basis)
            blob, dtype = encode_ints(coef)
            d = g.create_dataset("pca_coef", data=blob)
            d.attrs["packed_dtype"], d.attrs["packed_shape"], d.attrs["packed_step"] = dtype, coef.shape, COEF_STEP
            residual = f64 - pca_model(mean, basis, coef)
            blob, dtype = encode_ints(np.round(residual / step).astype(np.int64))
            d = g.create_dataset("flux_residual", data=blob)
        else:
            blob, dtype = encode_flux(flux, step)
            d = g.create_dataset("flux_dz", data=blob)
        _copy_attrs(f["flux"], d)
        d.attrs["packed_dtype"], d.attrs["packed_shape"], d.attrs["packed_step"] = dtype, flux.shape, step
        if continuum and "continuum" in f:
            idx = _cont_index(flux.shape[1])
            d = g.create_dataset("log_continuum_knots", data=np.log(f["continuum"][:n][:, idx]).astype(np.float32))
            d.attrs["index"] = idx
            _copy_attrs(f["continuum"], d)
    os.replace(str(dst) + ".tmp", dst)


def unpack(src: Path, dst: Path) -> None:
    with h5py.File(src, "r") as g, h5py.File(str(dst) + ".tmp", "w") as f:
        if g.attrs.get("packed") != PACKED:
            raise SystemExit(f"{src} is not a packed grid (made by `gpu_grids.py pack`)")
        _copy_attrs(g, f)
        del f.attrs["packed"]
        for name in ("labels", "wavelength"):
            d = f.create_dataset(name, data=g[name][:])
            _copy_attrs(g[name], d)
        pca = "flux_residual" in g
        packed = g["flux_residual" if pca else "flux_dz"]
        a = packed.attrs
        ints, step = read_ints(packed), float(a["packed_step"])
        if pca:  # the components' flux + the quantised residual
            model = pca_model(g["pca_mean"][:], g["pca_basis"][:], read_ints(g["pca_coef"]))
            flux = (model + ints * step).astype(np.float32)
        else:  # quantised differences along wavelength
            flux = (np.cumsum(ints, axis=1) * step).astype(np.float32)
        chunks = (min(64, flux.shape[0]), flux.shape[1])
        d = f.create_dataset("flux", data=flux, chunks=chunks)
        for k, v in a.items():
            if not k.startswith("packed_"):
                d.attrs[k] = v
        if "log_continuum_knots" in g:
            knots = g["log_continuum_knots"]
            idx, pix = knots.attrs["index"], np.arange(flux.shape[1])
            cont = np.exp(np.stack([np.interp(pix, idx, row) for row in knots[:].astype(np.float64)]))
            d = f.create_dataset("continuum", data=cont.astype(np.float32), chunks=chunks)
            for k, v in knots.attrs.items():
                if k != "index":
                    d.attrs[k] = v
    os.replace(str(dst) + ".tmp", dst)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--rows", type=int, default=None, help="pack only the first N rows")
    ap.add_argument("--step", type=float, default=FLUX_STEP, help="flux quantisation step (rms error step/sqrt(12))")
    ap.add_argument("--no-continuum", action="store_true", help="leave the continuum out (training does not read it)")
    ap.add_argument("--pca", type=int, default=0, help="K principal components + the quantised residual (0: off)")
    args = ap.parse_args(argv)
    if args.action == "pack":
        pack(args.src, args.dst, args.rows, args.step, not args.no_continuum, args.pca)
    else:
        unpack(args.src, args.dst)
    print(f"{args.action}ed {args.src} -> {args.dst} ({args.dst.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
