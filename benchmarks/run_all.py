"""Run every benchmark in turn (``make bench``); each prints its own table."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in ("bench_load.py", "bench_generate.py", "bench_analyze.py", "bench_answers.py", "bench_data_build.py", "bench_deid.py", "bench_tools.py", "bench_serving.py"):
    print(f"\n$ python benchmarks/{script}", flush=True)
    subprocess.run([sys.executable, str(here / script)], check=True)
