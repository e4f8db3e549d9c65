"""`noisyseg benchmark`: the papers' tables, reproducible from one config."""

from .runner import BenchmarkInterrupted, BenchmarkResult, run_benchmark
from .spec import BenchmarkSpec, load_benchmark

__all__ = ["BenchmarkInterrupted", "BenchmarkResult", "BenchmarkSpec", "load_benchmark", "run_benchmark"]
