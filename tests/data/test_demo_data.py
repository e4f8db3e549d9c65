"""Tests of the embedded demo datasets (MNI152 2D slices and 3D phantoms)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from noisyseg.data import demo_data
from noisyseg.data.demo_data import tissue_label, write_mni_demo, write_phantom_demo
from noisyseg.errors import DataError

N_TRAIN, N_TEST, SIZE = 5, 3, (48, 56)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mni(tmp_path_factory) -> Path:
    return write_mni_demo(tmp_path_factory.mktemp("mni") / "ds", n_train=N_TRAIN, n_test=N_TEST,
                          size=SIZE, seed=0)


def test_mni_decathlon_layout(mni):
    meta = json.loads((mni / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "grey matter", "2": "white matter"}
    assert meta["modality"] == {"0": "MRI"}
    assert meta["numTraining"] == N_TRAIN and meta["numTest"] == N_TEST
    train_ids = [Path(e["image"]).name[:-4] for e in meta["training"]]
    test_ids = [Path(p).name[:-4] for p in meta["test"]]
    assert train_ids == [f"mni_{i:03d}" for i in range(N_TRAIN)]
    assert test_ids == [f"mni_{i:03d}" for i in range(N_TRAIN, N_TRAIN + N_TEST)]
    assert meta["clean_cases"] == train_ids[:3]
    for entry in meta["training"]:
        assert (mni / entry["image"]).is_file() and (mni / entry["label"]).is_file()
    for cid in test_ids:
        assert (mni / "imagesTs" / f"{cid}.png").is_file()
        assert (mni / "labelsTs" / f"{cid}.png").is_file()
    assert sorted(p.name for p in mni.iterdir()) == sorted(
        ["dataset.json", "imagesTr", "labelsTr", "imagesTs", "labelsTs", "NOTICE_MNI152.txt"])
    assert "McGill" in (mni / "NOTICE_MNI152.txt").read_text()
    assert len(list((mni / "imagesTr").iterdir())) == N_TRAIN
    assert not list(mni.parent.glob(".ds.*"))  # no temporary folder left behind


def test_mni_pngs_and_labels(mni):
    for img_path in sorted(mni.glob("images*/*.png")):
        image = np.asarray(Image.open(img_path))
        label = np.asarray(Image.open(str(img_path).replace("images", "labels")))
        assert image.shape == SIZE and image.dtype == np.uint8
        assert label.shape == SIZE and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) == {0, 1, 2}
        # labels line up with the T1 contrast: white matter > grey matter > background
        means = [float(image[label == k].mean()) for k in range(3)]
        assert means[2] > means[1] + 20 > means[0] + 40, (img_path.name, means)
        assert 0.25 < float((label > 0).mean()) < 0.8


def test_mni_slices_distinct_disjoint_not_adjacent(mni):
    meta = json.loads((mni / "dataset.json").read_text())
    z = meta["source_slices"]
    train = [z[f"mni_{i:03d}"] for i in range(N_TRAIN)]
    test = [z[f"mni_{i:03d}"] for i in range(N_TRAIN, N_TRAIN + N_TEST)]
    assert not set(train) & set(test)
    assert min(abs(a - b) for a in train for b in test) >= 2
    allz = sorted(train + test)
    assert len(set(allz)) == len(allz) and np.all(np.diff(allz) >= 2)
    # the brain (gm+wm >= 0.5) spans z 1..154 in the template: middle third about 52..103
    assert 45 <= allz[0] and allz[-1] <= 110


def test_mni_same_seed_same_bytes_other_seed_differs(mni, tmp_path):
    again = write_mni_demo(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=0)
    assert _files(again) == _files(mni)
    other = write_mni_demo(tmp_path / "other", n_train=N_TRAIN, n_test=N_TEST, size=SIZE, seed=1)
    a, b = _files(mni), _files(other)
    assert a.keys() == b.keys()
    assert a["imagesTr/mni_000.png"] != b["imagesTr/mni_000.png"]


def test_mni_refuses_non_empty_folder(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        write_mni_demo(out, n_train=1, n_test=0, size=(16, 16))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    write_mni_demo(out, n_train=1, n_test=0, size=(16, 16), overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # old copy removed


def test_mni_accepts_existing_empty_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    write_mni_demo(out, n_train=1, n_test=1, size=(16, 16))
    assert (out / "dataset.json").is_file()


def test_crash_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing_write_label(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    real = demo_data.write_label
    monkeypatch.setattr(demo_data, "write_label", failing_write_label)
    with pytest.raises(RuntimeError):
        write_mni_demo(tmp_path / "ds", n_train=3, n_test=0, size=(16, 16))
    assert list(tmp_path.iterdir()) == []


def test_tissue_label_rule():
    gm = np.array([0.9, 0.3, 0.45, 0.6, 0.2, 0.5])
    wm = np.array([0.1, 0.6, 0.45, 0.4, 0.2, 0.5])
    assert tissue_label(gm, wm).tolist() == [1, 2, 0, 1, 0, 1]


def test_phantom_demo(tmp_path):
    import nibabel as nib

    kw = dict(n_train=3, n_test=2, shape=(24, 24, 16), seed=4)
    out = write_phantom_demo(tmp_path / "ph", **kw)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "organ"}
    assert meta["modality"] == {"0": "MRI"}
    assert meta["clean_cases"] == ["phantom_000", "phantom_001"]
    assert len(meta["training"]) == 3 and len(meta["test"]) == 2
    for entry in meta["training"]:
        img = nib.load(str(out / entry["image"]))
        lab = nib.load(str(out / entry["label"]))
        assert img.shape == (24, 24, 16) and lab.shape == (24, 24, 16)
        assert np.allclose(img.header.get_zooms(), (1.0, 1.0, 1.5))
        assert np.allclose(np.diag(img.affine)[:3], (1.0, 1.0, 1.5))
        values = np.asarray(lab.dataobj)
        assert set(np.unique(values).tolist()) == {0, 1}
        assert 0.05 <= float(values.mean()) <= 0.25
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == ["phantom_003.nii.gz",
                                                                    "phantom_004.nii.gz"]
    again = write_phantom_demo(tmp_path / "ph2", **kw)
    assert _files(again) == _files(out)
    with pytest.raises(DataError):
        write_phantom_demo(out, **kw)
