"""A tiny training run on the real LA volumes (skipped when ../shared/data/LA is absent)."""

import json
from pathlib import Path

import pytest

from noisyseg import api
from noisyseg.engine.trainer import build_method
from noisyseg.metrics import dice_per_class

LA_ROOT = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "LA").resolve()

pytestmark = [pytest.mark.la, pytest.mark.slow,
              pytest.mark.skipif(not (LA_ROOT / "train.list").is_file(), reason="real LA data not present")]


def test_training_on_real_la_raises_validation_dice_above_step_0(tmp_path):
    over = {"data": {"patch_size": [64, 64, 48], "batch_size": 2, "val_fraction": 0.1},
            "net": {"channels": [8, 16, 32, 64], "features": 8},
            "optim": {"name": "adam", "lr": 3e-3},
            "train": {"max_steps": 40, "val_every": 20, "log_every": 10, "val_max_cases": 1}}
    api.train(data=LA_ROOT, out=tmp_path / "r", overrides=over, progress=False)
    info = json.loads((tmp_path / "r" / "run_info.json").read_text())
    assert info["data"]["layout"] == "h5" and info["data"]["class_names"][0] == "background"
    case = api.open_data(LA_ROOT).case(info["split"]["val"][0]).load()
    assert case.spacing == pytest.approx((0.625, 0.625, 0.625))

    trained, data_info, cfg = api.load_run(tmp_path / "r")
    initial = build_method(cfg, 1, 2, 3).eval()  # the same seeded initialisation, before any step

    def dice(method):
        pred = api.predict_image(method, case.image, data_info, cfg).argmax(0)
        return dice_per_class(pred, case.label, 2)[1]

    d0, d1 = dice(initial), dice(trained)
    assert d1 > d0 + 0.1 and d1 > 0.2, (d0, d1)
