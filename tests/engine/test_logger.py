"""The training CSV log across a resume."""

from __future__ import annotations

import csv

from noisyseg.engine.logger import RunLogger


def test_a_resumed_log_keeps_the_checkpointed_steps_row_and_drops_later_ones(tmp_path):
    path = tmp_path / "train_log.csv"
    log = RunLogger(path, None)
    for step in (2, 4, 6):
        log.log(step, {"loss": float(step)})
    log.log(6, {"val/dice": 0.5})  # joins the row of step 6
    log.close()
    resumed = RunLogger(path, None, resume_step=4)  # checkpoint after step 4; steps 5.. run again
    assert [r["step"] for r in resumed.rows] == [2.0, 4.0]
    resumed.log(6, {"loss": 7.0})
    resumed.close()
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["loss"]) for r in rows] == [("2", "2.0"), ("4", "4.0"), ("6", "7.0")]
