"""Dataset-level noise (`noisyseg noise`): a readable noisy copy, its report, and bad input."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from noisyseg.cli import app
from noisyseg.data import open_dataset
from noisyseg.noise.apply import make_noisy_dataset

runner = CliRunner()


def _labels(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_morph_copy_keeps_clean_labels_trusted_cases_and_reports_noise(mni_small, tmp_path):
    out = make_noisy_dataset(mni_small, tmp_path / "n", protocol="morph", level=0.5, seed=1, progress=False)
    ds = open_dataset(out)
    assert ds.has_clean_labels and ds.trusted_ids == open_dataset(mni_small).trusted_ids
    rows = {r["case"]: r for r in csv.DictReader((out / "noise_report.csv").open())}
    candidates = [r.id for r in ds.train if r.id not in ds.trusted_ids]
    corrupted = [c for c, r in rows.items() if r["corrupted"] == "1"]
    assert len(corrupted) == round(0.5 * len(candidates)) and not set(corrupted) & set(ds.trusted_ids)
    for ref in ds.train:
        case = ref.load()
        changed = float(np.mean(case.label != case.clean_label))
        assert changed == pytest.approx(float(rows[case.id]["changed_fraction"]))
        if case.id in corrupted:
            assert changed > 0
        else:  # a kept-clean case is byte-identical to the source label
            assert (out / "labelsTr" / f"{case.id}.png").read_bytes() == (mni_small / "labelsTr" / f"{case.id}.png").read_bytes()
    # the clean labels and the test split are the source's, byte for byte
    assert _labels(out / "labelsTr_clean") == _labels(mni_small / "labelsTr")
    assert _labels(out / "labelsTs") == _labels(mni_small / "labelsTs")
    summary = json.loads((out / "noise_summary.json").read_text())
    assert summary["n_corrupted"] == len(corrupted) and summary["seed"] == 1


def test_same_seed_same_labels_other_seed_other_labels(mni_small, tmp_path):
    a = make_noisy_dataset(mni_small, tmp_path / "a", protocol="flip", level=0.05, seed=3, progress=False)
    b = make_noisy_dataset(mni_small, tmp_path / "b", protocol="flip", level=0.05, seed=3, progress=False)
    c = make_noisy_dataset(mni_small, tmp_path / "c", protocol="flip", level=0.05, seed=4, progress=False)
    assert _labels(a / "labelsTr") == _labels(b / "labelsTr")
    assert _labels(a / "labelsTr") != _labels(c / "labelsTr")


def test_3d_nifti_copy_keeps_the_affine_and_label_values(phantom3d, tmp_path):
    import nibabel as nib

    out = make_noisy_dataset(phantom3d, tmp_path / "n", protocol="markov", seed=0, progress=False)
    for src in sorted((phantom3d / "labelsTr").iterdir()):
        a, b = nib.load(str(out / "labelsTr" / src.name)), nib.load(str(src))
        assert np.allclose(a.affine, b.affine)
        assert set(np.unique(np.asarray(a.dataobj))) <= set(np.unique(np.asarray(b.dataobj)))


def test_decathlon_copy_with_metaimage_labels_is_readable_and_keeps_geometry(phantom3d, tmp_path):
    """.mhd labels name a .raw file beside them: the copy must carry whole files and the offset."""
    from noisyseg.io import read_file, write_image, write_label

    src = tmp_path / "mhd"
    meta = json.loads((phantom3d / "dataset.json").read_text())
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = (5.0, 6.0, 7.0)
    for entry in meta["training"]:
        for key, writer in (("image", write_image), ("label", write_label)):
            name = entry[key].replace(".nii.gz", ".mhd")
            writer(src / name, np.asarray(read_file(phantom3d / entry[key]).array), affine=affine)
            entry[key] = name
    meta["test"] = []
    (src / "dataset.json").write_text(json.dumps(meta))
    out = make_noisy_dataset(src, tmp_path / "n", protocol="markov", seed=0, progress=False)
    for ref in open_dataset(out).train:
        case = ref.load()  # reads labelsTr and labelsTr_clean (their data files included)
        np.testing.assert_allclose(case.affine, affine)
        assert case.clean_label is not None
    for folder in ("labelsTr", "labelsTr_clean"):
        np.testing.assert_allclose(read_file(next((out / folder).glob("*.mhd"))).affine, affine)


def test_h5_layout_is_converted_to_a_readable_decathlon_copy(tmp_path):
    import format_files as w  # tests/data helper

    root = w.la_dataset(tmp_path / "LA", n_train=3)
    out = make_noisy_dataset(root, tmp_path / "n", protocol="morph", level=1.0, seed=0, progress=False)
    ds = open_dataset(out)
    src = open_dataset(root)
    case, orig = ds.train[0].load(), src.train[0].load()
    assert np.allclose(case.image, orig.image, atol=1e-6)  # not normalised twice
    assert case.spacing == pytest.approx(orig.spacing)
    assert np.array_equal(case.clean_label, orig.label) and (case.label != orig.label).any()


def test_bad_input_gives_one_line_exit_2_and_writes_nothing(mni_small, tmp_path):
    def run(*args):
        return runner.invoke(app, ["noise", "--data", str(mni_small), "--out", str(tmp_path / "n"), *map(str, args)])

    res = run("--protocol", "morf")
    assert res.exit_code == 2 and "did you mean 'morph'" in res.stderr
    res = run("--protocol", "flip", "--level", "1.5")
    assert res.exit_code == 2 and "level" in res.stderr
    res = runner.invoke(app, ["noise", "--data", str(mni_small / "imagesTr"), "--out", str(tmp_path / "n"),
                              "--protocol", "morph"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "n").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".n.")]  # no partial folder left


def test_cli_writes_figures_and_prints_the_summary(mni_small, tmp_path):
    res = runner.invoke(app, ["noise", "--data", str(mni_small), "--out", str(tmp_path / "n"), "--protocol", "morph",
                              "--level", "1.0", "--figures", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "cases corrupted" in res.output
    assert (tmp_path / "n" / "figures" / "clean_vs_noisy.png").is_file()
    assert (tmp_path / "n" / "figures" / "noise_levels.png").is_file()


def test_protocol_parameters_are_checked_and_passed(mni_small, tmp_path):
    with pytest.raises(Exception, match="did you mean 'size'"):
        make_noisy_dataset(mni_small, tmp_path / "bad", protocol="morph", params={"sizes": 3}, progress=False)
    assert not (tmp_path / "bad").exists()
    res = runner.invoke(app, ["noise", "--data", str(mni_small), "--out", str(tmp_path / "n"), "--protocol", "morph",
                              "--level", "1", "--param", "size=3", "--param", "op=dilate", "--quiet"])
    assert res.exit_code == 0, res.output
    ops = [json.loads(r["operation"]) for r in csv.DictReader((tmp_path / "n" / "noise_report.csv").open())
           if r["corrupted"] == "1"]
    assert ops and all(o["op"] == "dilate" and o["size"] == 3 for o in ops)


def test_a_chosen_number_of_cases_stays_clean(mni_small, tmp_path):
    res = runner.invoke(app, ["noise", "--data", str(mni_small), "--out", str(tmp_path / "n"), "--protocol", "morph",
                              "--n-clean", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "n" / "noise_report.csv").open()))
    trusted = set(open_dataset(mni_small).trusted_ids)
    kept = [r["case"] for r in rows if r["corrupted"] == "0" and r["case"] not in trusted]
    assert len(kept) == 2


# ------------------------------------------------------------------ a protocol is one record

def _erase(label, *, spacing=None, rng, rate: float = 0.0):
    """A toy generator: every foreground pixel becomes background."""
    return np.zeros_like(label), {"protocol": "erase", "rate": rate}


def _erase_all(labels, level, rng, *, spacing=None):
    """A toy dataset protocol: sees every corrupted label at once."""
    return [(np.zeros_like(lab), {"protocol": "erase_all", "n": len(labels), "level": level}) for lab in labels]


def test_a_new_record_is_all_make_noisy_dataset_needs(mni_small, tmp_path, monkeypatch):
    from noisyseg.errors import ConfigError
    from noisyseg.noise import registry
    from noisyseg.noise.registry import Level, Protocol

    monkeypatch.setitem(registry.REGISTRY, "erase", Protocol("erase", "label", _erase, Level("rate", 0.0, 1.0)))
    monkeypatch.setitem(registry.PROTOCOLS, "erase", _erase)
    monkeypatch.setitem(registry.REGISTRY, "erase_all", Protocol(
        "erase_all", "dataset", _erase, Level("level", 0.0, 1.0, default=0.3), dataset_fn=_erase_all))
    monkeypatch.setitem(registry.PROTOCOLS, "erase_all", _erase)

    out = make_noisy_dataset(mni_small, tmp_path / "a", protocol="erase", level=0.25, clean_fraction=0.5, seed=0,
                             progress=False)
    rows = list(csv.DictReader((out / "noise_report.csv").open()))
    corrupted = [r for r in rows if r["corrupted"] == "1"]
    assert corrupted and all(json.loads(r["operation"]) == {"protocol": "erase", "rate": 0.25} for r in corrupted)
    with pytest.raises(ConfigError, match="erase level"):  # the record's range
        make_noisy_dataset(mni_small, tmp_path / "b", protocol="erase", level=1.5, progress=False)
    with pytest.raises(ConfigError, match="did you mean 'rate'"):  # the generator's own keywords
        make_noisy_dataset(mni_small, tmp_path / "b", protocol="erase", params={"rat": 0.1}, progress=False)

    out = make_noisy_dataset(mni_small, tmp_path / "c", protocol="erase_all", seed=0, progress=False)
    rows = list(csv.DictReader((out / "noise_report.csv").open()))
    infos = [json.loads(r["operation"]) for r in rows if r["corrupted"] == "1"]
    assert infos and all(i == {"protocol": "erase_all", "n": len(infos), "level": 0.3} for i in infos)
