"""Check packaging/minblas.c against NumPy: the products NumPy hands to BLAS, computed
through minblas (``LD_PRELOAD``: its symbols win over OpenBLAS's), compared with
``np.einsum(optimize=False)``, which never calls BLAS.

    python packaging/minblas_check.py      # builds minblas into build/minblas, checks it

tests/system/test_frozen.py runs :func:`check` (Linux with gcc), so CI checks minblas
whether or not a frozen build exists.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import numpy as np
rng = np.random.default_rng(7)
checked = 0

def same(got, want, dtype):
    global checked
    tol = 2e-4 if np.dtype(dtype).itemsize in (4, 8) and np.dtype(dtype).kind == "f" and \
        np.dtype(dtype).itemsize == 4 or np.dtype(dtype) == np.complex64 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    checked += 1

def arr(shape, dtype):
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)

for dtype in (np.float32, np.float64, np.complex64, np.complex128):
    for n in (1, 7, 64):
        x, y = arr(n, dtype), arr(n, dtype)
        same(np.dot(x, y), np.einsum("i,i", x, y, optimize=False), dtype)
        same(np.vdot(x, y), np.einsum("i,i", x.conj(), y, optimize=False), dtype)
        same(np.dot(x[::2], y[::2]), np.einsum("i,i", x[::2], y[::2], optimize=False), dtype)
    for m, k, n in ((3, 4, 5), (17, 9, 13), (1, 8, 1), (32, 32, 32)):
        a, b = arr((m, k), dtype), arr((k, n), dtype)
        want = np.einsum("ik,kj->ij", a, b, optimize=False)
        same(a @ b, want, dtype)                                      # gemm, row-major
        same(np.asfortranarray(a) @ np.asfortranarray(b), want, dtype)  # transposed flags
        same((b.T @ a.T).T, want, dtype)
        same(a @ a.T, np.einsum("ik,jk->ij", a, a, optimize=False), dtype)   # syrk
        same(a.T @ a, np.einsum("ki,kj->ij", a, a, optimize=False), dtype)   # syrk, trans
        v = arr(k, dtype)
        same(a @ v, np.einsum("ik,k->i", a, v, optimize=False), dtype)         # gemv
        same(np.asfortranarray(a) @ v, np.einsum("ik,k->i", a, v, optimize=False), dtype)
        w = arr(m, dtype)
        same(w @ a, np.einsum("i,ik->k", w, a, optimize=False), dtype)         # gemv, trans
        out = np.empty((m, n), dtype)
        np.dot(a, b, out=out)
        same(out, want, dtype)
    batch = arr((4, 6, 5), dtype)
    other = arr((4, 5, 3), dtype)
    same(batch @ other, np.einsum("bik,bkj->bij", batch, other, optimize=False), dtype)
    # np.dot of a vector with itself, as the audio level meter does
    mono = arr(960, dtype)
    same(np.dot(mono, mono), np.einsum("i,i", mono, mono, optimize=False), dtype)
print("minblas: %d products match" % checked)
"""

LAPACK = "import numpy as np; np.linalg.inv(np.eye(3))"


def build(out: Path) -> Path:
    sys.path.insert(0, str(HERE))
    import numpy
    import slim

    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    found = glob.glob(str(libs / "libscipy_openblas*.so*"))
    if not found:
        raise FileNotFoundError("this NumPy has no bundled OpenBLAS (numpy.libs)")
    wanted: set[str] = set()
    for module in glob.glob(str(libs.parent / "numpy" / "**" / "*.so"), recursive=True):
        wanted |= slim.undefined_symbols(module)
    return slim.build_minblas(Path(found[0]), out, wanted)


def check(out: Path) -> str:
    """Build minblas, check every product; returns the summary line."""
    library = build(out)
    env = {**os.environ, "LD_PRELOAD": str(library)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"minblas differs from NumPy:\n{done.stdout}\n{done.stderr}")
    # And LAPACK stops with a message instead of a wrong answer (this also shows that the
    # preloaded library, not OpenBLAS, answered above).
    lapack = subprocess.run(
        [sys.executable, "-c", LAPACK], env=env, capture_output=True, text=True, timeout=60
    )
    if lapack.returncode == 0 or "no LAPACK" not in lapack.stderr:
        raise AssertionError(f"LAPACK did not stop: {lapack.returncode} {lapack.stderr}")
    return done.stdout.strip()


if __name__ == "__main__":
    print(check(HERE.parent / "build" / "minblas"))
