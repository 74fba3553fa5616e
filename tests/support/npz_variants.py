"""Re-saves real SolARED AR folders with NumPy itself, in every form NumPy can write, for the
reader tests (tests/numpy_variants.rs).

    python npz_variants.py SRC_DATA_DIR OUT_DIR AR [AR ...]

writes OUT_DIR/<variant>/AR<n>/mean_{int,mag,pmdop}<n>_flat.npz for each variant below and
checks, with np.load, that each file reads back to the values it was made from: a fixture NumPy
could not read would test nothing.
"""

import os
import sys
import zipfile

import numpy as np
from numpy.lib import format as npformat

KINDS = ("int", "mag", "pmdop")


def load(src, ar):
    """The AR's three files as lists of arrays, arr_0 … arr_n in order."""
    out = {}
    for kind in KINDS:
        with np.load(os.path.join(src, f"AR{ar}", f"mean_{kind}{ar}_flat.npz"), allow_pickle=True) as z:
            out[kind] = [z[f"arr_{i}"] for i in range(len(z.files))]
    return out


def write_members(path, arrays, compression=zipfile.ZIP_STORED, version=None):
    """What np.savez does (numpy/lib/_npyio_impl.py: _savez), with the npy format version chosen."""
    with zipfile.ZipFile(path, mode="w", compression=compression, allowZip64=True) as zf:
        for i, a in enumerate(arrays):
            with zf.open(f"arr_{i}.npy", "w", force_zip64=True) as f:
                npformat.write_array(f, np.asanyarray(a), allow_pickle=True, version=version)


def savez(path, arrays):
    np.savez(path, *arrays)


def savez_compressed(path, arrays):
    np.savez_compressed(path, *arrays)


def zip64(path, arrays):
    # Python's zipfile writes Zip64 directory extras and end records only past 4 GiB or 65,535
    # members; lowering its limits makes it write them for these small files, through its own
    # code.
    saved = zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT
    zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = 1, 1
    try:
        write_members(path, arrays)
    finally:
        zipfile.ZIP64_LIMIT, zipfile.ZIP_FILECOUNT_LIMIT = saved
    with open(path, "rb") as f:
        data = f.read()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data, "no Zip64 end record written"


def floats(arrays, dtype, order="C"):
    return [a if a.dtype == object else np.asarray(a.astype(dtype), order=order) for a in arrays]


VARIANTS = {
    # NumPy 2.x np.savez: protocol-4 pickles, numpy._core, Zip64 extras in local headers.
    "savez": lambda p, a: savez(p, a),
    "savez_compressed": lambda p, a: savez_compressed(p, a),
    "big_endian": lambda p, a: savez(p, floats(a, ">f8")),
    "fortran": lambda p, a: savez(p, floats(a, "<f8", order="F")),
    "big_endian_fortran_compressed": lambda p, a: savez_compressed(p, floats(a, ">f8", order="F")),
    "npy_v1": lambda p, a: write_members(p, a, version=(1, 0)),
    "npy_v2": lambda p, a: write_members(p, a, version=(2, 0)),
    "npy_v3": lambda p, a: write_members(p, a, version=(3, 0)),
    "zip64": zip64,
    # Narrower floats: magpipe must give the float64 values np.load(...).astype(float) gives;
    # the *_as_f8 twin holds exactly those values as '<f8', for comparison.
    "float32_big": lambda p, a: savez(p, floats(a, ">f4")),
    "float32_big_as_f8": lambda p, a: savez(p, floats(floats(a, ">f4"), "<f8")),
    # One hour: pickle writes a one-element list with APPEND, not APPENDS.
    "first_hour": lambda p, a: savez(p, first_hour(a)),
}


def first_hour(arrays):
    return [a[:1] if a.dtype == object else a[:, :1] for a in arrays]


def same(a, b):
    if a.dtype == object:
        return a.shape == b.shape and all(x == y for x, y in zip(a, b))
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def main():
    src, out, ars = sys.argv[1], sys.argv[2], [int(a) for a in sys.argv[3:]]
    chosen = list(VARIANTS)
    for ar in ars:
        files = load(src, ar)
        for variant in chosen:
            d = os.path.join(out, variant, f"AR{ar}")
            os.makedirs(d, exist_ok=True)
            for kind in KINDS:
                path = os.path.join(d, f"mean_{kind}{ar}_flat.npz")
                VARIANTS[variant](path, files[kind])
                with np.load(path, allow_pickle=True) as z:
                    back = [z[f"arr_{i}"] for i in range(len(files[kind]))]
                # The float variants hold rounded values; their reference is the rounding.
                want = files[kind]
                if variant.startswith("float32"):
                    want = floats(want, "<f4")
                elif variant == "first_hour":
                    want = first_hour(want)
                for a, b in zip(back, want):
                    assert same(a, b), f"{path}: np.load does not give back what was saved"
                if variant == "savez":
                    # The point of this variant: NumPy 2's pickle (protocol 4, framed).
                    with zipfile.ZipFile(path) as z:
                        stamps = z.read(f"arr_{len(files[kind]) - 1}.npy")
                    assert b"\x80\x04\x95" in stamps, f"{path}: not a protocol-4 pickle"
    print(f"numpy {np.__version__}: {len(chosen)} variants of {len(ars)} ARs in {out}")


if __name__ == "__main__":
    main()
