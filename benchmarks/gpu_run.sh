#!/usr/bin/env bash
# One prepared GPU session: the GPU tests, then benchmarks/gpu_check.py; logs under $OUT.
#
#   bash benchmarks/gpu_run.sh [gpu_check.py arguments]
#
# Needs CuPy and a CUDA device. On a machine without a package index (the lent GPU machines
# here) the packages its image lacks travel as wheels in .whl/ (benchmarks/README.md says
# which); they are installed into /tmp/site first. Exit status: the tests'.
set -uo pipefail
OUT=${OUT:-gpu_logs}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import cupy, numpy, numba, dask, xarray, zarr; print('cupy', cupy.__version__, \
'numpy', numpy.__version__, 'numba', numba.__version__, 'dask', dask.__version__, \
'xarray', xarray.__version__, 'zarr', zarr.__version__)"
python3 benchmarks/gpu_parts.py 2>&1 | tee "$OUT/gpu_parts.log"
XDIST=""
python3 -c "import xdist" 2>/dev/null && XDIST="-n 4"  # the tests in 4 processes if it can
python3 -m pytest tests/test_gpu.py tests/test_device.py -q --tb=short -p no:cacheprovider $XDIST \
    >"$OUT/pytest.log" 2>&1
rc=$?
tail -n 30 "$OUT/pytest.log"
python3 benchmarks/gpu_check.py "$@" 2>&1 | grep -v -e RuntimeWarning -e warn_at_cap \
    | tee "$OUT/gpu_check.log"
exit $rc
