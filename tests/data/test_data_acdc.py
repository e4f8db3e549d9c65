"""ACDC in its two distributed layouts: the h5 form (slices + volumes + lists) and the original
NIfTI release; patient grouping of splits, noise and trusted cases; 2D runs on volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from format_files import h5, nifti

from noisyseg import api
from noisyseg.data import detect_layout, open_dataset
from noisyseg.engine.trainer import split_train_val
from noisyseg.errors import DataError

ACDC_ROOT = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ACDC").resolve()
real = pytest.mark.skipif(not (ACDC_ROOT / "train_slices.list").is_file(), reason="real ACDC data not present")


def _heart(shape: tuple[int, int], shift: int = 0) -> np.ndarray:
    """(H, W) uint8 label: a right ventricle (1), a myocardium ring (2) around a cavity (3)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = shape[0] // 2 + shift, shape[1] // 2
    r = np.hypot(yy - cy, xx - cx)
    lab = np.zeros(shape, np.uint8)
    lab[r < 9] = 2
    lab[r < 6] = 3
    lab[(np.hypot(yy - cy, xx - cx + 13) < 6) & (lab == 0)] = 1
    return lab


def _image(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = np.choose(lab, [0.1, 0.5, 0.3, 0.9]).astype(np.float32) + rng.normal(0, 0.05, lab.shape)
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def write_acdc_h5(root: Path, patients=(1, 3, 5, 7, 9, 11), val_patients=(2, 4), slices: int = 3,
                  frames=(1, 2)) -> Path:
    """A small ACDC h5 folder: training slices of `patients` (sizes differ per patient) and
    validation volumes (slices, H, W) of `val_patients`."""
    rng = np.random.default_rng(0)
    ids = []
    for p in patients:
        shape = (40 + 4 * (p % 3), 36 + 2 * (p % 4))
        for f in frames:
            for k in range(1, slices + 1):
                cid = f"patient{p:03d}_frame{f:02d}_slice_{k}"
                lab = _heart(shape, shift=k - 2)
                h5(root / "data" / "slices" / f"{cid}.h5", image=_image(lab, rng), label=lab)
                ids.append(cid)
    (root / "train_slices.list").write_text("\n".join(ids) + "\n")
    (root / "train.list").write_text("".join(f"patient{p:03d}_frame{f:02d}\n" for p in patients for f in frames))
    vol_ids = []
    for p in val_patients:
        for f in frames:
            lab = np.stack([_heart((44, 38), shift=k - 2) for k in range(5)])
            h5(root / "data" / f"patient{p:03d}_frame{f:02d}.h5", image=_image(lab, rng), label=lab)
            vol_ids.append(f"patient{p:03d}_frame{f:02d}")
    (root / "val.list").write_text("\n".join(vol_ids) + "\n")
    return root


def test_h5_layout_reads_slices_as_one_slice_volumes_and_volumes_in_xyz_order(tmp_path):
    root = write_acdc_h5(tmp_path / "ACDC")
    assert detect_layout(root) == "acdc_h5"
    ds = open_dataset(root)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 4, 0)
    assert ds.train_dims == 2 and ds.spatial_dims == 3 and not ds.spacing_known
    assert ds.class_names == ["background", "right ventricle", "myocardium", "left ventricle"]
    c = ds.case("patient003_frame01_slice_2").load()
    import h5py

    with h5py.File(root / "data" / "slices" / "patient003_frame01_slice_2.h5") as f:
        stored_img, stored_lab = f["image"][()], f["label"][()]
    assert c.image.shape == (1, stored_img.shape[1], stored_img.shape[0], 1)
    np.testing.assert_array_equal(c.label[:, :, 0], stored_lab.T)
    v = ds.case("patient002_frame01").load()
    with h5py.File(root / "data" / "patient002_frame01.h5") as f:
        vol = f["label"][()]
    assert v.label.shape == (38, 44, 5)
    np.testing.assert_array_equal(v.label, vol.transpose(2, 1, 0))
    assert ds.group_of("patient003_frame02_slice_1") == "patient003"


def test_a_folder_with_only_volumes_and_a_test_list_is_the_layout(tmp_path):
    lab = np.stack([_heart((30, 30)) for _ in range(3)])
    h5(tmp_path / "data" / "patient101_frame01.h5", image=lab.astype(np.float32) / 3, label=lab)
    (tmp_path / "test.list").write_text("patient101_frame01\npatient102_frame01\n")  # 102 is not on disk
    ds = open_dataset(tmp_path)
    assert ds.layout == "acdc_h5" and [r.id for r in ds.test] == ["patient101_frame01"] and not ds.train


def test_a_patient_in_two_splits_is_refused(tmp_path):
    root = write_acdc_h5(tmp_path / "ACDC", val_patients=(3,))
    with pytest.raises(DataError, match="patient003.*train.*val"):
        open_dataset(root)


def test_trusted_names_may_be_a_patient_a_frame_or_a_slice(tmp_path):
    root = write_acdc_h5(tmp_path / "ACDC")
    lst = tmp_path / "clean.txt"
    lst.write_text("patient005\npatient007_frame02\npatient009_frame01_slice_3\n")
    ds = open_dataset(root, clean_cases_file=lst)
    assert sorted(ds.trusted_ids) == sorted(
        [f"patient005_frame{f:02d}_slice_{k}" for f in (1, 2) for k in (1, 2, 3)]
        + [f"patient007_frame02_slice_{k}" for k in (1, 2, 3)] + ["patient009_frame01_slice_3"])
    lst.write_text("patient006\n")
    with pytest.raises(DataError, match="patient006.*not a training case"):
        open_dataset(root, clean_cases_file=lst)


def test_validation_split_holds_out_whole_patients_and_keeps_trusted_patients_in_training():
    ids = [f"patient{p:03d}_frame01_slice_{k}" for p in range(1, 11) for k in range(1, 4 + p % 3)]
    groups = {i: i[:10] for i in ids}
    for seed in range(5):
        train, val = split_train_val(ids, 0.3, seed, {"patient004_frame01_slice_1"}, groups)
        assert {groups[i] for i in train}.isdisjoint({groups[i] for i in val})
        assert len({groups[i] for i in val}) == 3 and "patient004" not in {groups[i] for i in val}
        assert sorted(train + val) == sorted(ids)
    # without groups the split is the per-case split it always was
    assert split_train_val(ids, 0.3, 1, set(), None) == split_train_val(ids, 0.3, 1, set(), {i: i for i in ids})


def test_noise_corrupts_a_share_of_patients_with_one_style_per_patient(tmp_path):
    from noisyseg.noise.apply import make_noisy_dataset

    root = write_acdc_h5(tmp_path / "ACDC", patients=(1, 3, 5, 7, 9, 11, 13, 15))
    out = make_noisy_dataset(root, tmp_path / "noisy", protocol="morph", level=0.75, seed=3,
                             params={"size_range": [3, 5]}, progress=False)
    import csv

    rows = list(csv.DictReader((out / "noise_report.csv").open()))
    by_patient: dict[str, list[dict]] = {}
    for r in rows:
        by_patient.setdefault(r["group"], []).append(r)
    corrupted = [p for p, rs in by_patient.items() if rs[0]["corrupted"] == "1"]
    assert len(corrupted) == 6  # 75 % of 8 patients
    for p, rs in by_patient.items():
        assert len({r["corrupted"] for r in rs}) == 1  # all slices of a patient or none
        ops = {(json.loads(r["operation"]).get("op"), json.loads(r["operation"]).get("size")) for r in rs}
        assert len(ops) == 1, (p, ops)  # one annotator style per patient
    assert len({json.loads(by_patient[p][0]["operation"])["op"] for p in corrupted}
               | {json.loads(by_patient[p][0]["operation"])["size"] for p in corrupted}) > 2
    noisy = open_dataset(out)
    assert noisy.groups["patient003_frame02_slice_1"] == "patient003" and noisy.train_dims == 2


def test_original_nifti_layout_with_spacing_and_testing_folder(tmp_path):
    aff = np.diag([1.5625, 1.5625, 10.0, 1.0])
    for split, p in (("training", 1), ("training", 2), ("testing", 101)):
        folder = tmp_path / "database" / split / f"patient{p:03d}"
        for f in (1, 12):
            lab = np.stack([_heart((32, 28)).T for _ in range(4)], -1)
            nifti(folder / f"patient{p:03d}_frame{f:02d}.nii.gz", (lab * 50 + 7).astype(np.int16), aff)
            nifti(folder / f"patient{p:03d}_frame{f:02d}_gt.nii.gz", lab, aff)
        nifti(folder / f"patient{p:03d}_4d.nii.gz", np.zeros((28, 32, 4, 3), np.int16), aff)
        (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\n")
    root = tmp_path / "database"
    assert detect_layout(root) == "acdc"
    ds = open_dataset(root)
    assert [r.id for r in ds.train] == ["patient001_frame01", "patient001_frame12", "patient002_frame01",
                                        "patient002_frame12"]
    assert [r.id for r in ds.test] == ["patient101_frame01", "patient101_frame12"]
    c = ds.train[0].load()
    assert c.spacing == pytest.approx((1.5625, 1.5625, 10.0)) and ds.spacing_known
    assert c.image.min() == 0.0 and c.image.max() == 1.0 and set(np.unique(c.label)) == {0, 1, 2, 3}


def test_2d_run_predicts_volumes_slice_by_slice_on_their_own_grid(tmp_path, tiny):
    root = write_acdc_h5(tmp_path / "ACDC")
    over = tiny(max_steps=4, patch=(32, 32))
    over["data"].update({"slice_size": [32, 32]})
    api.train(data=root, out=tmp_path / "run", overrides=over, progress=False)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["data"]["train_dims"] == 2
    groups = {i[:10] for i in info["split"]["val"]}
    assert groups and groups.isdisjoint({i[:10] for i in info["split"]["train"]})
    written = api.predict(run=tmp_path / "run", images=root, split="val", out=tmp_path / "pred", progress=False)
    assert sorted(p.name for p in written) == sorted(f"patient{p:03d}_frame{f:02d}.nii.gz" for p in (2, 4)
                                                       for f in (1, 2))
    import nibabel as nib

    assert nib.load(str(written[0])).shape == (38, 44, 5)
    # the same volumes as NIfTI files in a plain folder: normalised the same way, the same predictions
    ds = open_dataset(root)
    for ref in ds.val:
        nifti(tmp_path / "plain" / f"{ref.id}.nii.gz", ref.load().image[0] * 700.0 + 20.0, np.eye(4))
    plain = api.predict(run=tmp_path / "run", images=tmp_path / "plain", out=tmp_path / "pred_plain", progress=False)
    for p in plain:
        np.testing.assert_array_equal(nib.load(str(p)).get_fdata(), nib.load(str(tmp_path / "pred" / p.name)).get_fdata())
    summary = api.evaluate(pred=tmp_path / "pred", truth=root, split="val", out=tmp_path / "eval")
    assert summary["units"]["hd95"] == "pixel" and summary["n_cases"] == 4
    header = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["case", "dice_1"] and {"dice_2", "dice_3", "hd95_3", "asd_3"} <= set(header)


def test_slice_size_resizes_in_plane_and_predictions_return_to_the_input_grid():
    from noisyseg.data.case import Case
    from noisyseg.data.resample import in_plane_factors, resize_case

    assert in_plane_factors((100, 50, 7), (64, 64), -1) == pytest.approx((0.64, 1.28, 1.0))
    assert in_plane_factors((100, 50), (64, 64), None) == pytest.approx((0.64, 1.28))
    lab = np.zeros((100, 50, 3), np.int64)
    lab[20:80, 10:40] = 2
    case = Case("c", lab[None].astype(np.float32), lab, (1.0, 2.0, 5.0), np.diag([1.0, 2.0, 5.0, 1.0]), Path("c"))
    small = resize_case(case, (50, 25), -1)
    assert small.image.shape == (1, 50, 25, 3) and small.spacing == pytest.approx((2.0, 4.0, 5.0))
    assert set(np.unique(small.label)) == {0, 2}
    assert small.label[10:40, 5:20].min() == 2 and small.label[:9].max() == 0


@real
def test_real_acdc_slices_volumes_labels_and_patients():
    ds = open_dataset(ACDC_ROOT)
    assert ds.layout == "acdc_h5" and (len(ds.train), len(ds.val)) == (680, 20)
    assert len({ds.group_of(r.id) for r in ds.train}) == 35 and len({ds.group_of(r.id) for r in ds.val}) == 10
    c = ds.train[0].load()
    assert c.image.ndim == 4 and c.image.shape[-1] == 1 and c.image.dtype == np.float32
    v = ds.val[0].load()
    assert v.image.shape[1:] == v.label.shape and v.label.shape[2] < v.label.shape[0]
    assert set(np.unique(v.label)) == {0, 1, 2, 3}
    assert 0.0 <= float(v.image.min()) and float(v.image.max()) <= 1.0


@real
@pytest.mark.slow
def test_short_run_on_real_acdc_raises_validation_dice_above_step_0(tmp_path):
    from noisyseg.engine.trainer import build_method
    from noisyseg.metrics import dice_per_class

    over = {"data": {"spatial_dims": 2, "slice_size": [64, 64], "patch_size": [64, 64], "batch_size": 8,
                     "val_fraction": 0.1},
            "net": {"channels": [8, 16, 32, 64], "features": 8},
            "optim": {"name": "adam", "lr": 3e-3},
            "train": {"max_steps": 300, "val_every": 150, "log_every": 50, "val_max_cases": 40}}
    api.train(data=ACDC_ROOT, out=tmp_path / "r", overrides=over, progress=False)
    info = json.loads((tmp_path / "r" / "run_info.json").read_text())
    patients = {i[:10] for i in info["split"]["val"]}
    assert len(patients) == 4 and patients.isdisjoint({i[:10] for i in info["split"]["train"]})
    trained, data_info, cfg = api.load_run(tmp_path / "r")
    initial = build_method(cfg, 1, 4, 2).eval()
    volume = api.open_data(ACDC_ROOT).val[0].load()

    def mean_dice(method) -> float:
        pred = api.predict_image(method, volume.image, data_info, cfg).argmax(0)
        assert pred.shape == volume.label.shape
        return float(np.nanmean(dice_per_class(pred, volume.label, 4)[1:]))

    d0, d1 = mean_dice(initial), mean_dice(trained)
    assert d1 > d0 + 0.1, (d0, d1)


def test_every_command_reads_the_h5_layout_as_it_is(tmp_path):
    """noise, train, predict, evaluate, audit and benchmark on an ACDC h5 folder, without flags."""
    from typer.testing import CliRunner

    from noisyseg.cli import app

    root = write_acdc_h5(tmp_path / "ACDC")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "benchmark:\n  name: acdc tiny\n  noise: {protocol: morph, levels: [0.75], params: {size_range: [3, 5]}}\n"
        "  split: {test_split: val, n_trusted: 1}\n  methods: [supervised, clcs]\n  seeds: [0]\n"
        "data: {spatial_dims: 2, slice_size: [32, 32], patch_size: [32, 32], batch_size: 2, val_fraction: 0.2}\n"
        "net: {channels: [4, 8], features: 4}\n"
        "train: {max_steps: 3, val_every: 3, log_every: 1, ckpt_every: 3}\n")
    runner = CliRunner()

    def ok(*args):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    ok("noise", "--data", root, "--protocol", "morph", "--level", "0.5", "--out", tmp_path / "noisy")
    ok("train", "--data", tmp_path / "noisy", "--method", "clcs", "--config", cfg, "--out", tmp_path / "run",
       "--quiet")
    ok("predict", "--run", tmp_path / "run", "--images", root, "--split", "val", "--out", tmp_path / "pred",
       "--quiet")
    assert "in pixels" in ok("evaluate", "--pred", tmp_path / "pred", "--truth", root, "--split", "val",
                             "--out", tmp_path / "eval")
    ok("audit", "--run", tmp_path / "run", "--data", tmp_path / "noisy", "--out", tmp_path / "audit", "--quiet")
    assert len(list((tmp_path / "audit" / "maps").iterdir())) == 36
    ok("benchmark", "--config", cfg, "--data", root, "--out", tmp_path / "bench", "--quiet")
    summary = (tmp_path / "bench" / "summary.md").read_text()
    assert "(4 test cases)" in summary and "HD95 and ASD in pixels" in summary
    assert "Dice myocardium" in summary and "noise gap recovered" in summary
    trusted = (tmp_path / "bench" / "trusted.txt").read_text().split()
    assert len(trusted) == 6 and len({t[:10] for t in trusted}) == 1  # one whole patient
