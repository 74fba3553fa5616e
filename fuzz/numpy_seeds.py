"""Writes the numpy-2.x seeds of the npz fuzz target (fuzz/seeds/npz/numpy2_*): small SolARED-
shaped files, (81, 4) float arrays and four hourly timestamps, in the forms NumPy 2 writes, so
the fuzzer starts from protocol-4 pickles, big-endian and Fortran payloads, npy 3.0 headers and
Zip64 records as well as from the SolARED files' own form. Each seed's first byte tells the
target how many data members to read (0: one, 3: four).

    python fuzz/numpy_seeds.py fuzz/seeds/npz
"""

import datetime
import io
import os
import sys
import zipfile

import numpy as np
from numpy.lib import format as npformat


def members(n):
    rng = np.random.default_rng(n)
    t0 = datetime.datetime(2013, 3, 7, 18, 59, 37, 500000)
    stamps = np.array([t0 + datetime.timedelta(hours=h) for h in range(4)], dtype=object)
    return [rng.random((81, 4)) for _ in range(n)] + [stamps]


def savez(arrays, compressed=False, version=None, zip64=False):
    buf = io.BytesIO()
    saved = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    if zip64:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 1, 1
    try:
        method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
        with zipfile.ZipFile(buf, mode="w", compression=method, allowZip64=True) as zf:
            for i, a in enumerate(arrays):
                with zf.open(f"arr_{i}.npy", "w", force_zip64=True) as f:
                    npformat.write_array(f, a, allow_pickle=True, version=version)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
    return buf.getvalue()


def main():
    out = sys.argv[1]
    seeds = {
        "numpy2_savez": (0, savez(members(1))),
        "numpy2_savez_compressed_pmdop": (3, savez(members(4), compressed=True)),
        "numpy2_big_endian_fortran": (
            0,
            savez([np.asfortranarray(a.astype(">f8")) if a.dtype != object else a for a in members(1)]),
        ),
        "numpy2_float32_v3": (
            0,
            savez([a.astype("<f4") if a.dtype != object else a for a in members(1)], version=(3, 0)),
        ),
        "numpy2_zip64_pmdop": (3, savez(members(4), zip64=True)),
    }
    for name, (first, data) in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([first]) + data)
    print(f"numpy {np.__version__}: {len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
