"""Model-made label noise (`pseudo`, `sfda`): labels are a (source-free adapted) model's predictions."""

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from noisyseg import api
from noisyseg.cli import app
from noisyseg.data import open_dataset
from noisyseg.io import read_file
from noisyseg.errors import ConfigError
from noisyseg.modelnoise import make_noisy_dataset
from noisyseg.modelnoise.labels import pseudo_labels
from noisyseg.modelnoise.sfda import _bn_modules, adapt_entropy
from noisyseg.noise import apply

runner = CliRunner()
ADAPT = {"steps": 4, "lr": 0.05, "batch_size": 2}


def _overrides(max_steps=4, patch=(96, 112), **data):
    return {
        "data": {"patch_size": list(patch), "batch_size": 2, "val_fraction": 0.2, **data},
        "net": {"channels": [8, 16, 32], "features": 8},
        "train": {"max_steps": max_steps, "val_every": 2, "log_every": 2, "ckpt_every": 100, "device": "cpu"},
    }


@pytest.fixture(scope="module")
def mni_run(mni_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "run"
    api.train(data=mni_small, out=out, method="supervised", seed=0, overrides=_overrides(), progress=False)
    return out


def _corrupted(out):
    return [r["case"] for r in csv.DictReader((out / "noise_report.csv").open()) if r["corrupted"] == "1"]


def _written(out, cid):
    ds = open_dataset(out)
    return ds.case(cid).load().label


def _train_cases(data):
    return [r.load() for r in open_dataset(data).train]


def test_pseudo_labels_are_the_runs_predictions_on_the_training_images(mni_small, mni_run, tmp_path):
    out = make_noisy_dataset(mni_small, tmp_path / "n", protocol="pseudo", source_run=mni_run, progress=False)
    pred = tmp_path / "pred"
    api.predict(run=mni_run, images=mni_small / "imagesTr", out=pred, device="cpu", progress=False)
    corrupted = _corrupted(out)
    trusted = set(open_dataset(mni_small).trusted_ids)
    assert set(corrupted) == {r.id for r in open_dataset(mni_small).train} - trusted and corrupted
    for cid in corrupted:
        expected = np.asarray(read_file(pred / f"{cid}.png").array)
        got = np.asarray(read_file(out / "labelsTr" / f"{cid}.png").array)
        assert np.array_equal(got, expected), cid
    for cid in trusted:  # trusted cases keep their clean label
        assert (out / "labelsTr" / f"{cid}.png").read_bytes() == (mni_small / "labelsTr" / f"{cid}.png").read_bytes()
    row = next(r for r in csv.DictReader((out / "noise_report.csv").open()) if r["corrupted"] == "1")
    assert json.loads(row["operation"])["protocol"] == "pseudo"


def test_adaptation_changes_batch_norm_affine_only_and_is_seeded(mni_small, mni_run):
    cases = _train_cases(mni_small)
    method, info, _ = api.load_run(mni_run, device="cpu")
    before = {k: v.clone() for k, v in method.state_dict().items()}
    adapt_entropy(method, cases, patch_size=info["patch_size"], seed=3, **ADAPT)
    after = method.state_dict()
    bn_names = {f"{n}.{p}" for n, m in method.named_modules() if m in _bn_modules(method) for p in ("weight", "bias")}
    assert bn_names
    assert any(not torch.equal(before[k], after[k]) for k in bn_names)
    conv = [n for n, m in method.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert conv
    for n in conv:
        assert torch.equal(before[f"{n}.weight"], after[f"{n}.weight"]), n
    assert all(p.requires_grad for p in method.parameters())  # flags restored
    again, _, _ = api.load_run(mni_run, device="cpu")
    adapt_entropy(again, cases, patch_size=info["patch_size"], seed=3, **ADAPT)
    assert all(torch.equal(after[k], again.state_dict()[k]) for k in after)


def test_sfda_labels_are_the_adapted_models_predictions(mni_small, mni_run, tmp_path):
    out = make_noisy_dataset(mni_small, tmp_path / "n", protocol="sfda", source_run=mni_run, seed=3,
                             params=ADAPT, progress=False)
    cases = _train_cases(mni_small)
    method, info, cfg = api.load_run(mni_run, device="cpu")
    plain = dict(zip([c.id for c in cases], pseudo_labels(method, info, cfg, cases)))
    adapt_entropy(method, cases, patch_size=info["patch_size"], seed=3, **ADAPT)
    adapted = dict(zip([c.id for c in cases], pseudo_labels(method, info, cfg, cases)))
    corrupted = _corrupted(out)
    assert corrupted
    for cid in corrupted:
        assert np.array_equal(_written(out, cid), adapted[cid]), cid
    assert any(not np.array_equal(plain[c], adapted[c]) for c in corrupted)  # adaptation mattered
    op = json.loads(next(r for r in csv.DictReader((out / "noise_report.csv").open()) if r["corrupted"] == "1")["operation"])
    assert op["protocol"] == "sfda" and op["adapt"]["steps"] == ADAPT["steps"]


def test_sfda_from_a_source_dataset_trains_in_a_removed_temporary_folder(mni_small, tmp_path):
    out = make_noisy_dataset(mni_small, tmp_path / "n", protocol="sfda", source=mni_small, seed=0,
                             source_overrides=_overrides(max_steps=2), params={"steps": 2}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n"]
    assert _corrupted(out) and (out / "noise_summary.json").is_file()


def test_class_mismatch_fails_clearly_and_writes_nothing(phantom3d, mni_small, tmp_path):
    run = tmp_path / "ph_run"
    api.train(data=phantom3d, out=run, method="supervised", seed=0, progress=False,
              overrides=_overrides(max_steps=1, patch=(32, 32), spatial_dims=2))
    for protocol in ("pseudo", "sfda"):
        res = runner.invoke(app, ["noise", "--data", str(mni_small), "--protocol", protocol, "--out",
                                  str(tmp_path / "n"), "--source-run", str(run), "--quiet"])
        assert res.exit_code == 2, res.output
        msg = res.output.strip()
        assert "\n" not in msg and "2 classes" in msg and "has 3" in msg, msg
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ph_run"]


def test_missing_source_is_one_clear_line(mni_small, tmp_path):
    for protocol, opt in (("pseudo", "--source-run"), ("sfda", "--source")):
        res = runner.invoke(app, ["noise", "--data", str(mni_small), "--protocol", protocol,
                                  "--out", str(tmp_path / "n")])
        assert res.exit_code == 2 and opt in res.output and len(res.output.strip().splitlines()) == 1, res.output
    res = runner.invoke(app, ["noise", "--data", str(mni_small), "--protocol", "flip", "--out",
                              str(tmp_path / "n"), "--source-run", str(tmp_path)])
    assert res.exit_code == 2 and "--source" in res.output
    assert not any(tmp_path.iterdir())


def test_the_noise_layer_asks_for_a_model_protocols_labels_and_passes_their_arguments(mni_small, tmp_path):
    with pytest.raises(ConfigError, match="modelnoise"):  # noise/ trains no model itself
        apply.make_noisy_dataset(mni_small, tmp_path / "a", protocol="pseudo", progress=False)
    with pytest.raises(ConfigError, match="no model labels"):
        apply.make_noisy_dataset(mni_small, tmp_path / "b", protocol="flip", model_labels=lambda *a: [],
                                 progress=False)
    seen = {}

    def given(ds, cases, corrupt, scratch):
        seen.update(cases=[c.id for c in cases], corrupt=corrupt, scratch=scratch)
        return [(np.zeros_like(c.label), {"protocol": "zeros"}) if c.id in corrupt else (c.label, {"protocol": "none"})
                for c in cases]

    out = apply.make_noisy_dataset(mni_small, tmp_path / "c", protocol="sfda", params={"steps": 1}, seed=2,
                                   model_labels=given, progress=False)
    assert seen["scratch"] == tmp_path and set(_corrupted(out)) == seen["corrupt"] and seen["corrupt"]
    assert all(not _written(out, cid).any() for cid in seen["corrupt"])
    assert json.loads((out / "noise_summary.json").read_text())["params"] == {"steps": 1}
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_new_model_protocol_is_one_module_plus_its_record(mni_small, mni_run, tmp_path, monkeypatch):
    """A record of kind model whose `impl` names a module with check_args/adapt is used end to end:
    its checks run, its adaptation reaches the model, and its report entries are written."""
    import sys
    import types

    from noisyseg.noise import registry

    mod = types.ModuleType("fake_model_protocol")
    seen = {}

    def check_args(source, source_run, params):
        if "gain" not in params:
            raise ConfigError("noise protocol 'zero': needs gain")
        return dict(params)

    def adapt(method, cases, info, cfg, params, seed):
        seen["cases"] = len(cases)
        for p in method.parameters():  # an adaptation that makes every prediction background
            p.data.zero_()
        return {"gain": params["gain"]}

    mod.check_args, mod.adapt = check_args, adapt
    monkeypatch.setitem(sys.modules, "fake_model_protocol", mod)
    monkeypatch.setitem(registry.REGISTRY, "zero", registry.Protocol("zero", "model", impl="fake_model_protocol"))
    with pytest.raises(ConfigError, match="needs gain"):
        make_noisy_dataset(mni_small, tmp_path / "bad", protocol="zero", source_run=mni_run, progress=False)
    assert not (tmp_path / "bad").exists()
    out = make_noisy_dataset(mni_small, tmp_path / "n", protocol="zero", source_run=mni_run, params={"gain": 3},
                             progress=False)
    assert seen["cases"] == len(_train_cases(mni_small))
    corrupted = _corrupted(out)
    assert corrupted
    for cid in corrupted:
        assert np.unique(_written(out, cid)).tolist() == [0]
    row = next(r for r in csv.DictReader((out / "noise_report.csv").open()) if r["corrupted"] == "1")
    assert json.loads(row["operation"])["gain"] == 3
