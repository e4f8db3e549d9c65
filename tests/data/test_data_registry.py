"""Layout detection, open_dataset and validate_dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noisyseg.data import detect_layout, open_dataset, registry, validate_dataset
from noisyseg.data.case import Layout
from noisyseg.data.registry import LAYOUTS, READERS
from noisyseg.errors import DataError

import format_files as w  # sibling helper module

SHAPE = (5, 4, 3)


def decathlon(root: Path) -> Path:
    for cid in ("a", "b"):
        w.nifti(root / "imagesTr" / f"{cid}.nii.gz", w.image(SHAPE))
        w.nifti(root / "labelsTr" / f"{cid}.nii.gz", w.label(SHAPE))
    return root


def la(root: Path) -> Path:
    w.h5(root / "2018LA_Seg_Training Set" / "X1" / "mri_norm2.h5", image=w.image(SHAPE), label=w.label(SHAPE))
    (root / "train.list").write_text("X1\n")
    return root


def flat_h5(root: Path) -> Path:
    w.h5(root / "case1.h5", image=w.image(SHAPE), label=w.label(SHAPE))
    (root / "train.list").write_text("case1\n")
    return root


def brats(root: Path) -> Path:
    cid = "BraTS2021_00042"
    for mod in ("flair", "t1", "t1ce", "t2"):
        w.nifti(root / cid / f"{cid}_{mod}.nii.gz", w.image(SHAPE))
    w.nifti(root / cid / f"{cid}_seg.nii.gz", w.label(SHAPE, 4))
    return root


def kvasir(root: Path) -> Path:
    w.png(root / "images" / "p1.jpg", np.full((8, 8, 3), 90), fmt="JPEG")
    w.png(root / "masks" / "p1.jpg", w.label((8, 8), 255), fmt="JPEG")
    return root


@pytest.mark.parametrize("maker, layout", [(decathlon, "decathlon"), (la, "h5"), (flat_h5, "h5"),
                                           (brats, "brats"), (kvasir, "kvasir")])
def test_detect_open_and_validate(tmp_path, maker, layout):
    root = maker(tmp_path / "ds")
    assert detect_layout(root) == layout
    ds = open_dataset(root)
    assert ds.layout == layout
    counts = validate_dataset(ds, progress=False)
    assert counts["train"] == len(ds.train) >= 1


def test_open_dataset_passes_trusted_file(tmp_path):
    root = decathlon(tmp_path / "ds")
    trusted = tmp_path / "trusted.txt"
    trusted.write_text("b\n")
    assert open_dataset(root, clean_cases_file=trusted).trusted_ids == ["b"]
    trusted.write_text("zzz\n")
    with pytest.raises(DataError, match=r"trusted\.txt: trusted case 'zzz'"):
        open_dataset(root, clean_cases_file=trusted)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nowhere: dataset folder not found"):
        open_dataset(tmp_path / "nowhere")


def test_file_instead_of_folder(tmp_path):
    f = w.nifti(tmp_path / "img.nii.gz", w.image(SHAPE))
    with pytest.raises(DataError, match=r"img\.nii\.gz: not a folder"):
        open_dataset(f)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: dataset folder is empty"):
        open_dataset(tmp_path / "empty")


def test_unknown_layout(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="odd: no known dataset layout") as err:
        open_dataset(tmp_path / "odd")
    for layout in LAYOUTS:  # the error text lists every layout, from the one list
        assert layout.expects in str(err.value)


def test_one_ordered_list_of_layouts(tmp_path, monkeypatch):
    assert [layout.name for layout in LAYOUTS] == ["decathlon", "acdc_h5", "acdc", "h5", "brats", "promise12",
                                                   "kvasir"]
    assert list(READERS) == [layout.name for layout in LAYOUTS]
    # a new reader is one LAYOUT record: detection and the error text follow it
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hello")
    toy = Layout("toy", lambda root: (root / "notes.txt").is_file(), lambda root, **kw: None, "notes.txt (toy)")
    monkeypatch.setattr(registry, "LAYOUTS", LAYOUTS + (toy,))
    assert detect_layout(tmp_path / "odd") == "toy"
    # detection order decides: a Decathlon folder that also has notes.txt is still Decathlon
    root = decathlon(tmp_path / "ds")
    (root / "notes.txt").write_text("hello")
    assert detect_layout(root) == "decathlon"


def test_validate_empty_training_set(tmp_path):
    root = tmp_path / "ds"
    w.nifti(root / "imagesTs" / "t.nii.gz", w.image(SHAPE))  # test images only
    ds = open_dataset(root)
    assert ds.train == [] and len(ds.test) == 1
    with pytest.raises(DataError, match="training set is empty"):
        validate_dataset(ds, progress=False)


def test_validate_fails_fast_on_bad_case(tmp_path):
    root = decathlon(tmp_path / "ds")
    w.nifti(root / "labelsTr" / "b.nii.gz", w.label((5, 4, 2)))
    with pytest.raises(DataError, match=r"labelsTr/b\.nii\.gz: label shape"):
        validate_dataset(open_dataset(root), progress=False)


def test_validate_progress_bar(tmp_path, capsys):
    validate_dataset(open_dataset(decathlon(tmp_path / "ds")), progress=True)
    assert "2/2" in capsys.readouterr().err
