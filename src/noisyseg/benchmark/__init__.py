"""`noisyseg benchmark`: the papers' tables, reproducible from one config."""

from .runner import BenchmarkResult, run_benchmark
from .spec import BenchmarkSpec, load_benchmark

__all__ = ["BenchmarkResult", "BenchmarkSpec", "load_benchmark", "run_benchmark"]
