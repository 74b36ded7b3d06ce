"""tasks/train/wandb_run.py: the W&B run a Ray Train run's driver keeps, fed from rank 0's progress file and the
final checkpoint's files; real W&B offline, read back from its files."""
import json
import threading
from pathlib import Path

import pytest
from wandb_files import read_run

from tasks.train.job import Tracking, Trained
from tasks.train.state import Progress
from tasks.train.wandb_run import DriverRun


def _row(epoch: int, loss: float) -> dict:
    return {"kind": "epoch", "row": {"epoch": epoch, "train/loss": loss, "val/accuracy": 0.5 + epoch / 10}, "epochs": 3}


def test_rows_as_rank_0_appends_them_then_the_summary_and_plots(tmp_path):
    progress_path = tmp_path / "p.jsonl"
    progress_path.write_text("")
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(out / "plots" / "curves.png")
    (out / "eval.json").write_text(json.dumps({"metrics": {"test/accuracy": 0.9}, "plots": ["plots/curves.png"]}))
    tracking = Tracking("p", "offline", "r1", "g1", job_type="train", config_extra={"repro": {"commit": "abc"}})
    with DriverRun(tracking, {"model": {"name": "mlp"}}, tmp_path, str(progress_path)) as wb:
        with open(progress_path, "a") as f:
            f.write(json.dumps(_row(1, 1.0)) + "\n")
            f.write(json.dumps({"kind": "note", "text": "a note is not a row"}) + "\n")
            f.write(json.dumps(_row(2, 0.8)) + "\n")
            f.write(json.dumps(_row(2, 0.7)) + "\n")  # epoch 2 redone after a worker restart: W&B keeps the first
            f.write(json.dumps(_row(3, 0.6)) + "\n")
            f.write('{"kind": "epoch", "row": {"ep')  # a line still being written is not read
        progress = Progress(epoch=3, best_epoch=3, stopped="done")
        info = wb.finish(Trained(out, {"test/accuracy": 0.9}, progress), {"baseline/logistic/accuracy": 0.8})
    assert json.loads((out / "wandb.json").read_text()) == info and info["mode"] == "offline"
    logged = read_run(info["run_dir"])
    rows = [h for h in logged["history"] if "train/loss" in h]
    assert [(h["epoch"], h["train/loss"]) for h in rows] == [(1, 1.0), (2, 0.8), (3, 0.6)]
    s = logged["summary"]
    assert s["plots/curves"]["_type"] == "image-file"  # logged at the last epoch's step
    assert s["test/accuracy"] == 0.9 and s["baseline/logistic/accuracy"] == 0.8 and s["best_epoch"] == 3
    assert "trial_state" not in s
    assert logged["config"]["model"]["name"] == "mlp" and logged["config"]["repro"]["commit"] == "abc"
    assert logged["group"] == "g1" and logged["state"] == "finished"
    # wandb-core called directly (as read_run does) reads what the public `wandb leet inspect` command does
    assert read_run(info["run_dir"], via="core") == read_run(info["run_dir"], via="cli") == logged


def test_a_run_whose_training_raised_is_closed_as_failed(tmp_path):
    tracking = Tracking("p", "offline", "r2", "g2")
    with pytest.raises(RuntimeError, match="worker died"), DriverRun(tracking, {}, tmp_path, None) as wb:
        for _ in range(100):  # the run opens in its thread; wait for it so the failure has a run to close
            if wb.run is not None:
                break
            threading.Event().wait(0.1)
        run_dir = Path(wb.run.dir).parent
        raise RuntimeError("worker died")
    assert read_run(run_dir)["state"] == "failed"


def test_disabled_opens_nothing_and_writes_no_file(tmp_path):
    with DriverRun(Tracking("p", "disabled", "r3", "g3"), {}, tmp_path, None) as wb:
        info = wb.finish(Trained(tmp_path, {}, Progress(stopped="done")), trial=True)
    assert info == {"mode": "disabled", "run_dir": None} and not (tmp_path / "wandb.json").exists()
    assert not (tmp_path / "wandb").exists()


def test_w_and_b_failing_is_a_warning_not_the_runs_failure(tmp_path, capsys):
    """W&B refusing the run (here its own check of the mode) leaves a trained run untracked, said once."""
    with DriverRun(Tracking("p", "no-such-mode", "r4", "g4"), {}, tmp_path, None) as wb:
        info = wb.finish(Trained(tmp_path, {}, Progress(stopped="done")))
    assert info == {"mode": "no-such-mode", "run_dir": None} and not (tmp_path / "wandb.json").exists()
    err = capsys.readouterr().err
    assert err.count("warning: W&B:") == 1 and "run r4 is not tracked" in err


def test_baselines_that_failed_leave_the_summary_without_them():
    """The pipeline's own wait for them raises their error; the W&B summary does without."""
    from tasks.train.ray_train import _baselines

    assert _baselines(None) == {} and _baselines(lambda: {"baseline/x/accuracy": 0.5}) == {"baseline/x/accuracy": 0.5}
    assert _baselines(lambda: 1 / 0) == {}
