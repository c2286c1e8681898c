"""Where the time of a GPU stencil call goes: the NaN check, the kernel alone, the full call.

Run on a machine with CuPy and an NVIDIA GPU (``benchmarks/gpu_run.sh`` runs it first)::

    python benchmarks/gpu_parts.py

Prints, on a 100,000 x 1,000 float64 batch: the device-to-device copy; the NaN check's
reduction (nan_policy='raise') in copies; each CUDA stencil kernel variant alone (L1 or
shared-memory staging with 2 outputs per thread, register-blocked with R outputs per thread)
for 3 to 101 taps as a fraction of the copy, the default plan marked; ``differentiate_array``
for finite_difference and savgol(window=21) with and without the NaN check; and where the
time of savgol's automatic window goes (the choice on the host, the stencils on the device).
"""

import sys
import time
from pathlib import Path

import cupy as cp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import deltaflow as dfl  # noqa: E402
from deltaflow.kernels import _bandwidth_xp, _cuda  # noqa: E402
from deltaflow.kernels import finite_difference as fdm  # noqa: E402
from deltaflow.kernels import savgol as sgm  # noqa: E402


def bt(f, r=7):
    """Best wall time of r calls after a warm-up, synchronising the device."""
    f()
    cp.cuda.Device().synchronize()
    best = 1e9
    for _ in range(r):
        t = time.perf_counter()
        f()
        cp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t)
    return best


rng = np.random.default_rng(0)
x = np.linspace(0, 10, 1000)
host = np.sin(x)[None] * rng.uniform(0.5, 2, (100000, 1)) + 0.01 * rng.standard_normal(
    (100000, 1000)
)
y = cp.asarray(host)
tc = bt(lambda: y.copy())
print(f"copy {y.nbytes / tc / 1e9:.0f} GB/s ({tc * 1e3:.3f} ms)")
for label, f in [
    ("isnan(min(y))", lambda: bool(cp.isnan(cp.min(y)))),
    ("any_nan reduction", lambda: _cuda.any_nan(y)),
    ("empty_like", lambda: cp.empty_like(y)),
]:
    t = bt(f)
    print(f"{label}: {t * 1e3:.3f} ms = {t / tc:.2f} copies")
sts = [
    ("fd w3", fdm.build_stencil(x, 1, 2)),
    ("fd w5", fdm.build_stencil(x, 1, 4)),
    ("fd w9", fdm.build_stencil(x, 1, 8)),
    ("sg w21", sgm.build_stencil(x, 21, 3, 1)),
    ("sg w51", sgm.build_stencil(x, 51, 3, 1)),
    ("sg w101", sgm.build_stencil(x, 101, 3, 1)),
]
variants = [("uniform", 2, False), ("uniform", 2, True)]
variants += [("blocked", r, False) for r in (3, 7, 11)]
variants += [("blocked", r, True) for r in (3, 5, 7, 9, 11)]
print("kernel alone, x copy (* = default plan):")
print(f"{'variant':<18}" + "".join(f"{label:>10}" for label, _ in sts))
for v in variants:
    line = f"{'-'.join(map(str, v)):<18}"
    for _, st in sts:
        w = st.center.shape[0]
        t = bt(lambda st=st, v=v: _cuda.apply([st], None, y, variant=v))
        mark = (
            "*"
            if _cuda.uniform_plan(w, 1000, 8)[0] == _cuda.uniform_plan(w, 1000, 8, v)[0]
            else " "
        )
        line += f"{tc / t:>9.3f}{mark}"
    print(line, flush=True)
y32 = y.astype(cp.float32)
tc32 = bt(lambda: y32.copy())
line = "float32, default plan:"
for label, st in sts:
    line += f"  {label} {tc32 / bt(lambda st=st: _cuda.apply([st], None, y32)):.3f}x"
print(line, flush=True)
for m, kw in [("finite_difference", {}), ("savgol", {"window": 21}), ("savgol", {"window": 101})]:
    for pol in ("raise", "propagate"):
        t = bt(
            lambda m=m, kw=kw, pol=pol: dfl.differentiate_array(
                y, x, method=m, nan_policy=pol, **kw
            )
        )
        print(f"differentiate_array {m} {kw} nan_policy={pol}: {tc / t:.3f}x copy")
t_all = bt(lambda: dfl.differentiate_array(y, x, method="savgol"), r=3)
t_choose = bt(lambda: sgm._choose(y, x, 1, sgm.SavgolParams(), cp), r=3)
t_noise = bt(lambda: _bandwidth_xp.noise_sigma(y, x, cp), r=3)
t_fits = bt(lambda: _bandwidth_xp.block_moments(y, x, 6, 8, cp), r=3)
t_host = bt(lambda: sgm._choose(host, x, 1, sgm.SavgolParams(), np), r=2)
print(
    f"savgol automatic window: {tc / t_all:.4f}x copy ({t_all * 1e3:.1f} ms); the choice on "
    f"the device {t_choose * 1e3:.1f} ms (noise {t_noise * 1e3:.1f}, block fits "
    f"{t_fits * 1e3:.1f}); the same choice on the host's CPUs {t_host * 1e3:.0f} ms"
)
