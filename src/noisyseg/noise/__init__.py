"""Seeded label-noise generators for benchmarks (docs/reference.md §3) and noise reports.

Every generator is ``fn(label, *, spacing=None, rng, **params) -> (noisy, info)``:
same shape and dtype out, only values present in the input, a JSON-serialisable info
dict, and the same output for the same ``rng`` seed.
"""

from .classes import classswap, flip
from .geometric import affine, ellipse, polygon
from .l2b import KERNELS, calibrate_l2b, kernel_probs_from_shift, l2b, l2b_dataset
from .markov import markov
from .morph import choose_clean_cases, morph
from .registry import (
    LEVEL_PARAMS,
    MODEL_PROTOCOLS,
    PROTOCOLS,
    REGISTRY,
    Protocol,
    apply_protocol,
    get_protocol,
    protocol_record,
    validate_level,
)
from .report import noise_stats

__all__ = [
    "KERNELS",
    "LEVEL_PARAMS",
    "MODEL_PROTOCOLS",
    "PROTOCOLS",
    "Protocol",
    "REGISTRY",
    "affine",
    "apply_protocol",
    "calibrate_l2b",
    "choose_clean_cases",
    "classswap",
    "ellipse",
    "flip",
    "get_protocol",
    "kernel_probs_from_shift",
    "l2b",
    "l2b_dataset",
    "markov",
    "morph",
    "noise_stats",
    "polygon",
    "protocol_record",
    "validate_level",
]
