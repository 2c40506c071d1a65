"""``python -m benchmarks``: see benchmarks/suite.py, or run with --help.

The environment must be set before numpy, numba or torch load: glibc reads GLIBC_TUNABLES at
process start, and the OpenMP runtimes read OMP_WAIT_POLICY when they load. So the command
re-executes itself once with them set.
"""
import os
import sys

# Measured on this machine kind (shared/reference/numba-performance.md): spinning OpenMP threads
# stall 13-50 ms whenever another process takes a CPU; fresh 40-80 MB outputs are mmapped and
# unmapped on every call, and those page faults cost more than the kernels (for torch too).
REQUIRED_ENVIRONMENT = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000",
}

if __name__ == "__main__":
    if any(os.environ.get(key) != value for key, value in REQUIRED_ENVIRONMENT.items()):
        os.environ.update(REQUIRED_ENVIRONMENT)
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]])
    from .suite import main

    sys.exit(main())
