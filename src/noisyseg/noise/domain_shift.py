"""A simulated source domain for SFDA-Noise when the data has only one domain.

SFDA-Noise needs a source model trained on another scanner or site. The LA release has
one MRI domain, so the source domain is simulated from the training images: the same
contrast change for every case (a "scanner"), plus per-case nuisance:

* contrast: min-max scale each image to [0, 1], apply gamma `gamma` (γ < 1 brightens the
  dark tissue, flattening the blood-pool / wall contrast that LGE MRI segmentation uses);
* a smooth multiplicative bias field 1 + `bias`·b(x), b a random low-resolution field
  (cubic-upsampled from a 4-voxel-per-axis grid, unit maximum), seeded per case;
* blur: Gaussian of `blur_sigma` voxels (a coarser acquisition);
* noise: Gaussian of `noise_std` times the image's standard deviation;
* the result is z-scored again, as the target images are.

Labels are the clean labels: the source domain is fully and correctly annotated. The
source model trained on it makes errors on the target images that come from the domain
shift (structured, image-dependent), which is what SFDA-Noise is. Caveat, stated in the
README: the simulated source holds the same patients as the target training set (24 LA
volumes are too few to split off a disjoint source domain), so the source model has seen
their anatomy; the adaptation and prediction happen on the unshifted target images.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationError
from scipy import ndimage
from tqdm.auto import tqdm

from ..config import StrictModel, validation_message
from ..errors import ConfigError, DataError
from ..io import atomic_dir


class ScannerShift(StrictModel):
    """Parameters of the simulated scanner (see the module docstring)."""

    gamma: float = Field(0.5, gt=0.0)
    bias: float = Field(0.4, ge=0.0, lt=1.0)
    blur_sigma: float = Field(1.0, ge=0.0)
    noise_std: float = Field(0.1, ge=0.0)


def shift_image(image: np.ndarray, shift: ScannerShift, rng: np.random.Generator) -> np.ndarray:
    """Apply the simulated scanner to one image (C, *S) float; returns float32 (C, *S), z-scored."""
    out = np.empty(image.shape, dtype=np.float32)
    spatial = image.shape[1:]
    coarse = rng.uniform(-1.0, 1.0, size=(4,) * len(spatial))
    field = ndimage.zoom(coarse, [s / 4 for s in spatial], order=3, mode="nearest")[tuple(slice(0, s) for s in spatial)]
    field = field / max(float(np.abs(field).max()), 1e-8)
    for c in range(image.shape[0]):
        x = image[c].astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        x = x ** shift.gamma * (1.0 + shift.bias * field)
        if shift.blur_sigma > 0:
            x = ndimage.gaussian_filter(x, shift.blur_sigma)
        x = x + rng.normal(0.0, shift.noise_std * float(x.std()) + 1e-12, size=x.shape)
        out[c] = ((x - x.mean()) / max(float(x.std()), 1e-8)).astype(np.float32)
    return out


def write_shifted_source(data: Path | str, out: Path | str, *, seed: int = 0, params: dict | None = None,
                         progress: bool = True) -> Path:
    """Write the simulated source domain of a dataset's training cases (clean labels) as a
    Decathlon folder; reused when `out` already holds one. Returns `out`."""
    from ..data import open_dataset
    from ..data.convert import write_as_decathlon

    try:
        shift = ScannerShift.model_validate(params or {})
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, ScannerShift, "scanner shift", prefix="source_params.")) from exc
    out = Path(out)
    if (out / "dataset.json").is_file():
        return out
    ds = open_dataset(Path(data))
    cases = []
    for i, ref in enumerate(tqdm(ds.train, desc="simulating the source scanner", disable=not progress, leave=False)):
        c = ref.load()
        label = c.clean_label if c.clean_label is not None else c.label
        if label is None:
            raise DataError(f"{c.image_path}: training case '{c.id}' has no label")
        image = shift_image(c.image, shift, np.random.default_rng([seed, 7, i]))
        cases.append(replace(c, image=image, label=label, clean_label=None))
    with atomic_dir(out, overwrite=True) as tmp:
        write_as_decathlon(ds, tmp, cases, [c.label for c in cases], trusted_ids=[], progress=progress)
        (tmp / "scanner_shift.json").write_text(json.dumps({"seed": seed, **shift.model_dump()}, indent=2))
    return out
