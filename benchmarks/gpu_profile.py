"""Launch each CUDA kernel of interest once, for a profiler (Nsight Compute) to read.

    ncu -k 'regex:stencil|median_mad|window_sums' --section SpeedOfLight ... \\
        python benchmarks/gpu_profile.py

On a 100,000 x 1,000 float64 batch: the uniform stencil (L1) for 3 and 21 taps, the
blocked kernel for 21 taps one tap per step and R taps per step, and savgol's window
choice kernels (the noise differences and the row medians). Everything is compiled and
run once before, so the profiled launches are warm.
"""

import sys
from pathlib import Path

import cupy as cp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deltaflow.kernels import _bandwidth, _cuda  # noqa: E402
from deltaflow.kernels import finite_difference as fdm  # noqa: E402
from deltaflow.kernels import savgol as sgm  # noqa: E402

rng = np.random.default_rng(0)
x = np.linspace(0, 10, 1000)
y = cp.asarray(np.sin(x)[None] + 0.01 * rng.standard_normal((100000, 1000)))
a = _bandwidth._difference_weights(_bandwidth._key(x), 6)
fd3, sg21 = fdm.build_stencil(x, 1, 2), sgm.build_stencil(x, 21, 3, 1)
runs = [
    lambda: _cuda.apply([fd3], None, y, variant=("uniform", 2, False)),
    lambda: _cuda.apply([sg21], None, y, variant=("uniform", 2, False)),
    lambda: _cuda.apply([sg21], None, y, variant=("blocked", 7, False)),
    lambda: _cuda.apply([sg21], None, y, variant=("blocked", 7, True)),
    lambda: _cuda.window_sums(y, a),
]
e = _cuda.window_sums(y, a)
runs.append(lambda: _cuda.median_mad(e))
for f in runs:  # compile and warm
    f()
cp.cuda.Device().synchronize()
for f in runs:
    f()
cp.cuda.Device().synchronize()
print("profiled launches done")
