"""Pack a grid file small enough to travel to a lent GPU machine, and unpack it there.

A device call carries at most 64 MiB of working tree, and one broad-domain grid of 2,048 rows is 87 MB
(float32 flux and continuum at 5,507 pixels). Packed:

- normalised flux as uint16 on [0, ``FLUX_MAX``] (steps of 1.9e-5, rms quantisation error 5.5e-6 — three
  orders below the emulators' errors), gzip + shuffle;
- the continuum, which is smooth, as its logarithm every ``CONT_STEP`` pixels (and the last), interpolated
  back linearly in log (≲1e-6 relative on the broad grids);
- labels, wavelengths and every attribute unchanged, so the unpacked file is an ordinary grid file.

    python benchmarks/gpu_grids.py pack IN.h5 OUT.h5 [--rows N]
    python benchmarks/gpu_grids.py unpack IN.h5 OUT.h5

No pickle; h5py only (no stellarinf import, so it runs before the package is installed there).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import h5py
import numpy as np

FLUX_MAX = 1.25
CONT_STEP = 32
PACKED = "stellarinf-grid-packed"


def _copy_attrs(src, dst) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v


def _cont_index(n_pix: int) -> np.ndarray:
    idx = np.arange(0, n_pix, CONT_STEP)
    return idx if idx[-1] == n_pix - 1 else np.append(idx, n_pix - 1)


def pack(src: Path, dst: Path, rows: int | None = None) -> None:
    with h5py.File(src, "r") as f, h5py.File(str(dst) + ".tmp", "w") as g:
        n = f["flux"].shape[0] if rows is None else min(rows, f["flux"].shape[0])
        flux = f["flux"][:n]
        if flux.min() < 0 or flux.max() > FLUX_MAX:
            raise SystemExit(f"flux outside [0, {FLUX_MAX}]: cannot pack {src} losslessly enough")
        _copy_attrs(f, g)
        g.attrs["packed"] = PACKED
        for name in ("labels", "wavelength"):
            d = g.create_dataset(name, data=f[name][:n] if name == "labels" else f[name][:])
            _copy_attrs(f[name], d)
        q = np.round(flux / FLUX_MAX * 65535).astype(np.uint16)
        d = g.create_dataset("flux_q", data=q, compression="gzip", compression_opts=6, shuffle=True)
        _copy_attrs(f["flux"], d)
        if "continuum" in f:
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
        flux = (g["flux_q"][:].astype(np.float64) * (FLUX_MAX / 65535)).astype(np.float32)
        chunks = (min(64, flux.shape[0]), flux.shape[1])
        d = f.create_dataset("flux", data=flux, chunks=chunks)
        _copy_attrs(g["flux_q"], d)
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
    args = ap.parse_args(argv)
    if args.action == "pack":
        pack(args.src, args.dst, args.rows)
    else:
        unpack(args.src, args.dst)
    print(f"{args.action}ed {args.src} -> {args.dst} ({args.dst.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
