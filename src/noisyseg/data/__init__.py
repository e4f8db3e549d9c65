"""Dataset readers (Decathlon / nnU-Net, ACDC, LA and Pancreas-CT h5, BraTS 2021, PROMISE12, Kvasir-SEG),
one data model (:class:`Case`, :class:`Dataset`) and layout detection (:func:`open_dataset`)."""

from .brats import read_brats
from .case import Case, CaseRef, Dataset
from .decathlon import read_decathlon
from .h5cases import read_h5_dataset
from .kvasir import read_kvasir
from .promise12 import read_promise12
from .registry import detect_layout, open_dataset, validate_dataset

__all__ = [
    "Case",
    "CaseRef",
    "Dataset",
    "detect_layout",
    "open_dataset",
    "read_brats",
    "read_decathlon",
    "read_h5_dataset",
    "read_kvasir",
    "read_promise12",
    "validate_dataset",
]
