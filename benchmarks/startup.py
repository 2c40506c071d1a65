"""Cold start in fresh processes: import time and first-call time of one loss, with Numba's
cache warm (kernels loaded from disk) and with an empty cache (kernels compiled)."""
from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Runs in the fresh process: the clock starts before `import generated` (which loads numpy and
# numba) and stops after the first value_and_grad returns.
CHILD = r"""
import time
started = time.perf_counter()
import generated
imported = time.perf_counter()
import json, pickle, sys
with open(sys.argv[1], "rb") as f:
    name, positional, keywords = pickle.load(f)
loaded = time.perf_counter()
getattr(generated, name + "_value_and_grad")(*positional, **keywords)
called = time.perf_counter()
print(json.dumps({"import_s": imported - started, "first_call_s": called - loaded}))
"""


def fresh_process(call_file: Path, environment: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, str(call_file)], cwd=ROOT, env=environment,
                          capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started  # with the interpreter's own start
    result["import_plus_first_call_s"] = result["import_s"] + result["first_call_s"]
    return result


def measure_startup(name: str, positional: list[Any], keywords: dict[str, Any], repeats: int = 3) -> dict[str, Any]:
    """Median over ``repeats`` fresh processes with the cache warm; one with an empty cache."""
    environment = dict(os.environ)
    with tempfile.TemporaryDirectory() as scratch:
        call_file = Path(scratch) / "call.pickle"
        call_file.write_bytes(pickle.dumps((name, positional, keywords)))
        fresh_process(call_file, environment)  # fills the cache if this signature was never compiled
        warm_runs = [fresh_process(call_file, environment) for _ in range(repeats)]
        empty_cache = Path(scratch) / "numba-cache"
        empty_cache.mkdir()
        cold = fresh_process(call_file, {**environment, "NUMBA_CACHE_DIR": str(empty_cache)})
    warm = {key: statistics.median(run[key] for run in warm_runs) for key in warm_runs[0]}
    return {"loss": name, "warm_cache": warm, "empty_cache": cold, "target_s": 0.6,
            "meets_target": warm["import_plus_first_call_s"] < 0.6}
