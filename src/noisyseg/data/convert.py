"""Write any opened dataset as a Decathlon-layout folder (NIfTI images and labels, dataset.json).

Used where a dataset in another layout (LA / Pancreas h5, BraTS, Kvasir) has to become a
plain folder that every command reads: noisy copies (`noisyseg noise`) and the train / test
split a benchmark holds out of a layout that ships without test labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io import write_image, write_label
from .case import Case, CaseRef, Dataset


def write_as_decathlon(ds: Dataset, folder: Path, cases: Sequence[Case], labels: Sequence[np.ndarray], *,
                       clean: Sequence[np.ndarray] | None = None, test: Sequence[CaseRef] = (),
                       trusted_ids: Sequence[str] | None = None, progress: bool = True) -> None:
    """Write `cases` as training cases with `labels` (class indices, (*S) each), optionally
    their clean labels in ``labelsTr_clean/``, and the `test` cases with their own labels.

    Images keep their affine (multi-channel images become 4D NIfTI, channels last) and are
    marked ``noNorm`` in dataset.json because they are written already normalised; labels
    are written with the dataset's label values (BraTS 0/1/2/4) and its spacing.
    """
    folder = Path(folder)
    values = np.asarray(ds.label_values, dtype=np.int64)

    def put(split: str, case: Case, label: np.ndarray | None, clean_label: np.ndarray | None) -> dict:
        img = np.moveaxis(case.image, 0, -1) if case.image.shape[0] > 1 else case.image[0]
        name = f"{case.id}.nii.gz"
        write_image(folder / f"images{split}" / name, img, affine=case.affine)
        entry = {"image": f"./images{split}/{name}"}
        if label is not None:
            write_label(folder / f"labels{split}" / name, values[label], affine=case.affine, spacing=case.spacing)
            entry["label"] = f"./labels{split}/{name}"
        if clean_label is not None:
            write_label(folder / "labelsTr_clean" / name, values[clean_label], affine=case.affine,
                        spacing=case.spacing)
        return entry

    clean = clean if clean is not None else [None] * len(cases)
    training = [put("Tr", c, lab, cl) for c, lab, cl in zip(cases, labels, clean)]
    test_entries = []
    for ref in tqdm(test, desc="convert test cases", disable=not progress, leave=False):
        c = ref.load()
        test_entries.append(put("Ts", c, c.label, None)["image"])
    meta = {
        "name": f"{ds.root.name} (converted by noisyseg)",
        "modality": {str(i): "noNorm" for i in range(ds.in_channels)},
        "source_modalities": ds.modalities,
        "labels": {str(v): n for v, n in zip(ds.label_values, ds.class_names)},
        "training": training, "test": test_entries, "numTraining": len(training), "numTest": len(test_entries),
        "clean_cases": list(ds.trusted_ids if trusted_ids is None else trusted_ids),
        "regions_class_indices": ds.regions,
    }
    ids = {c.id for c in cases} | {r.id for r in test}
    if ds.groups:
        meta["case_groups"] = {cid: g for cid, g in ds.groups.items() if cid in ids}
    if ds.train_dims is not None:
        meta["train_dims"] = ds.train_dims
    if not ds.spacing_known:
        meta["spacing_known"] = False
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
