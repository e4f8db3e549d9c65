import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from noisyseg import api
from noisyseg.errors import ConfigError
from noisyseg.engine.checkpoint import load_checkpoint


def _log_without_timing(path):
    with open(path) as fh:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(fh)]


@pytest.mark.parametrize("workers", [(0, 0, 0), (0, 2, 1)])
def test_resume_is_bit_identical_to_an_uninterrupted_run(mni_small, tmp_path, tiny, workers):
    """(uninterrupted, first part, resumed part) DataLoader workers: the count changes nothing."""
    over = tiny(max_steps=12)

    def with_workers(n):
        return {**over, "data": {**over["data"], "num_workers": n}}

    api.train(data=mni_small, out=tmp_path / "a", overrides=with_workers(workers[0]), progress=False)
    from noisyseg.engine.trainer import train as engine_train

    cfg = api.make_config(None, overrides=with_workers(workers[1]))
    ds = api.open_data(mni_small)
    first = engine_train(cfg, ds, tmp_path / "b", progress=False, stop_at_step=7)
    assert first.interrupted and first.steps_done == 7
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 7
    res = api.train(data=mni_small, out=tmp_path / "b", overrides=with_workers(workers[2]), resume=True,
                    progress=False)
    assert res.steps_done == 12 and not res.interrupted
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["method"].keys() == b["method"].keys()
    for k in a["method"]:
        assert torch.equal(a["method"][k], b["method"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _log_without_timing(tmp_path / "a" / "train_log.csv") == _log_without_timing(tmp_path / "b" / "train_log.csv")


def test_memory_mapped_and_in_memory_cases_train_the_same_weights(phantom3d, tmp_path):
    over = {"data": {"patch_size": [16, 16, 16], "batch_size": 2, "num_workers": 1},
            "net": {"channels": [4, 8], "features": 4}, "train": {"max_steps": 4, "val_every": 4}}
    api.train(data=phantom3d, out=tmp_path / "mapped", overrides=over, progress=False)
    over["data"]["in_memory"] = True
    api.train(data=phantom3d, out=tmp_path / "memory", overrides=over, progress=False)
    a = load_checkpoint(tmp_path / "mapped" / "checkpoints" / "last.pt")["method"]
    b = load_checkpoint(tmp_path / "memory" / "checkpoints" / "last.pt")["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_is_complete_and_loads_with_weights_only(mni_small, tmp_path, tiny):
    api.train(data=mni_small, out=tmp_path / "r", overrides=tiny(max_steps=4), seed=3, progress=False)
    ck = tmp_path / "r" / "checkpoints" / "last.pt"
    state = torch.load(ck, weights_only=True)
    assert {"method", "optimizer", "scaler", "step", "rng", "config", "versions", "data_info"} <= state.keys()
    assert state["step"] == 4 and state["config"]["train"]["seed"] == 3
    assert state["versions"]["torch"] == str(torch.__version__)
    assert not [p for p in ck.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    info = json.loads((tmp_path / "r" / "run_info.json").read_text())
    assert info["seed"] == 3 and set(info["split"]["val"]).isdisjoint(info["split"]["train"])
    assert (tmp_path / "r" / "config.yaml").is_file() and (tmp_path / "r" / "figures" / "training_curves.png").is_file()


def test_validation_split_never_uses_test_cases_and_keeps_trusted_in_train(mni_small, tmp_path, tiny):
    api.train(data=mni_small, out=tmp_path / "r", overrides=tiny(max_steps=2), progress=False)
    info = json.loads((tmp_path / "r" / "run_info.json").read_text())
    ds = api.open_data(mni_small)
    test_ids = {r.id for r in ds.test}
    assert test_ids.isdisjoint(info["split"]["val"]) and test_ids.isdisjoint(info["split"]["train"])
    assert set(ds.trusted_ids) <= set(info["split"]["train"])
    assert len(info["split"]["val"]) >= 1


def test_training_reduces_loss_and_lr_follows_poly_schedule(mni_small, tmp_path, tiny):
    over = tiny(max_steps=30)
    over["optim"] = {"name": "adam", "lr": 3e-3, "poly_power": 0.9}
    api.train(data=mni_small, out=tmp_path / "r", overrides=over, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "r" / "train_log.csv")))
    losses = [float(r["loss"]) for r in rows if r.get("loss")]
    assert losses[-1] < losses[0]
    for r in rows:
        if r.get("lr"):
            step_before = int(r["step"]) - 1  # the lr logged is the one used for that step
            assert float(r["lr"]) == pytest.approx(3e-3 * (1 - step_before / 30) ** 0.9, rel=1e-6)


def test_bad_config_fails_before_creating_the_run_folder(mni_small, tmp_path, tiny):
    over = tiny()
    over["data"]["patch_size"] = [90, 112]  # not divisible by 4
    with pytest.raises(ConfigError, match="divisible"):
        api.train(data=mni_small, out=tmp_path / "r", overrides=over, progress=False)
    assert not (tmp_path / "r").exists()


def test_resume_with_a_different_config_is_refused(mni_small, tmp_path, tiny):
    api.train(data=mni_small, out=tmp_path / "r", overrides=tiny(max_steps=3), progress=False)
    over = tiny(max_steps=6)
    over["optim"] = {"lr": 0.5}
    with pytest.raises(ConfigError, match="differs"):
        api.train(data=mni_small, out=tmp_path / "r", overrides=over, resume=True, progress=False)


def test_existing_run_folder_is_not_overwritten(mni_small, tmp_path, tiny):
    api.train(data=mni_small, out=tmp_path / "r", overrides=tiny(max_steps=2), progress=False)
    with pytest.raises(ConfigError, match="not empty"):
        api.train(data=mni_small, out=tmp_path / "r", overrides=tiny(max_steps=2), progress=False)


def test_3d_training_and_prediction_keep_the_affine(phantom3d, tmp_path):
    import nibabel as nib

    over = {"data": {"patch_size": [16, 16, 16], "batch_size": 2},
            "net": {"channels": [4, 8], "features": 4},
            "train": {"max_steps": 3, "val_every": 3, "log_every": 1}}
    api.train(data=phantom3d, out=tmp_path / "r", overrides=over, progress=False)
    out = api.predict(run=tmp_path / "r", images=phantom3d / "imagesTs", out=tmp_path / "pred", progress=False)
    src = sorted((phantom3d / "imagesTs").iterdir())
    assert [p.name for p in out] == [p.name for p in src]
    for o, s in zip(out, src):
        a, b = nib.load(str(o)), nib.load(str(s))
        assert a.shape == b.shape and (a.affine == b.affine).all()


def test_2d_net_on_3d_volumes_predicts_slice_by_slice(phantom3d, tmp_path):
    import nibabel as nib

    over = {"data": {"spatial_dims": 2, "patch_size": [32, 32], "batch_size": 4},
            "net": {"channels": [4, 8], "features": 4}, "train": {"max_steps": 3, "val_every": 3}}
    api.train(data=phantom3d, out=tmp_path / "r", overrides=over, progress=False)
    out = api.predict(run=tmp_path / "r", images=phantom3d / "imagesTs", out=tmp_path / "pred", progress=False)
    assert nib.load(str(out[0])).shape == nib.load(str(sorted((phantom3d / "imagesTs").iterdir())[0])).shape


@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_gloo(mni_small, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {patch_size: [96, 112], batch_size: 2}\n"
                   "net: {channels: [8, 16, 32], features: 8}\n"
                   "train: {max_steps: 4, val_every: 4, log_every: 2, device: cpu}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
                           "-m", "noisyseg.cli", "train", "--data", str(mni_small), "--out", str(tmp_path / "r"),
                           "--config", str(cfg), "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done:") == 1 and "-inf" not in proc.stdout  # rank 0 reports, with its Dice
    info = json.loads((tmp_path / "r" / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 4


def test_text_log_keeps_early_lines_and_every_warning(tmp_path):
    import warnings

    from noisyseg.engine.logger import TextLog

    with TextLog() as log:
        log.write("loading")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("spacing differs", UserWarning)
        log.open(tmp_path / "train.log")
        log.write("done: 3 steps")
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines][0] == "loading"
    assert "warning: UserWarning: spacing differs" in lines[1] and lines[2].endswith("done: 3 steps")


def test_ctrl_c_to_the_process_group_with_workers_checkpoints_and_resumes(mni_small, tmp_path):
    """As a terminal's Ctrl-C: SIGINT to the training process and its DataLoader workers."""
    import signal
    import time

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {patch_size: [96, 112], batch_size: 2, num_workers: 2}\n"
                   "net: {channels: [8, 16, 32], features: 8}\n"
                   "train: {max_steps: 400, val_every: 1000, log_every: 1, ckpt_every: 1000, device: cpu}\n")
    cmd = [sys.executable, "-m", "noisyseg.cli", "train", "--data", str(mni_small), "--out", str(tmp_path / "r"),
           "--config", str(cfg), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    started = tmp_path / "r" / "run_info.json"  # written just before the loop
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not started.is_file():
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in out and "Traceback" not in err
    step = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"]
    assert 0 < step < 400
    res = subprocess.run(cmd + ["--resume", "--max-steps", str(step + 2)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == step + 2
