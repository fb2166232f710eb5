"""train.report_to: MLflow (real, a local file store) and the checks around trackers."""

import pytest

from qvl import UserError

pytestmark = pytest.mark.slow


def test_report_to_accepts_known_trackers_only(qvl_host):
    from qvl.config import ConfigError, load_config

    task = qvl_host.task("colors")
    assert load_config(task).train.report_to == ["tensorboard"]
    for bad in ('["tensorbord"]', '["none", "mlflow"]'):
        with pytest.raises(ConfigError) as caught:
            load_config(task, [], [f"train.report_to={bad}"])
        assert "train.report_to: must list some of tensorboard, mlflow, wandb, trackio, or be [\"none\"]" in \
            caught.value.problems[0]


def test_mlflow_gets_settings_once_every_step_and_the_pictures_and_resume_continues_the_run(
        qvl_run_stage, qvl_run_dir, qvl_quick_run, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database unless told so
    common = (*qvl_quick_run, "task.train_samples=8", "train.report_to=['mlflow']", "train.eval_every=2",
              "eval.max_samples=4", "train.eval_samples=4")
    qvl_run_stage("colors", "train", *common)
    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "colors"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["train.lr"] == "0.003" and run.data.params["task_name"] == "colors"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2]
    assert client.get_metric_history(run.info.run_id, "val/loss")
    pictures = {a.path for a in client.list_artifacts(run.info.run_id, "pictures")}
    assert "pictures/loss.png" in pictures
    assert run.info.status == "FINISHED"
    assert not (qvl_run_dir / "tensorboard").exists()  # report_to without tensorboard
    # --resume to step 4: the same tracked run goes on, its settings are not logged twice
    qvl_run_stage("colors", "train", *common, "train.steps=4", resume=True)
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == run.info.run_id
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4]


def test_a_tracker_that_is_not_installed_is_a_clear_error(qvl_run_stage, qvl_quick_run, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"train.report_to includes 'wandb', but wandb is not installed: "
                                        r"pip install wandb"):
        qvl_run_stage("colors", "train", *qvl_quick_run, "train.report_to=['wandb']")


def test_a_tracker_that_cannot_start_is_one_line_naming_the_setting(qvl_run_stage, qvl_quick_run, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(UserError, match=r"train.report_to = 'mlflow': mlflow could not start a run \(MlflowException: "
                                        r"The filesystem tracking backend"):
        qvl_run_stage("colors", "train", *qvl_quick_run, "train.report_to=['mlflow']")


def wandb_records(path):
    """The records of an offline W&B run file (``run-ID.wandb``), decoded.

    The file is a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of records, each
    with a 7-byte header: checksum, length, and whether it is whole, first, middle or last part) of
    ``wandb_internal_pb2.Record`` messages; wandb ships no Python reader for it since wandb-core.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, records, pending = 32768, 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the block's tail is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk, position = data[position + 7:position + 7 + length], position + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        else:
            records.append(pending + chunk)
    decoded = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        decoded.append(record)
    return decoded


def test_wandb_offline_gets_settings_once_every_step_and_the_pictures_and_resume_continues_the_run(
        qvl_run_stage, qvl_run_dir, qvl_quick_run, monkeypatch):
    import json

    pytest.importorskip("wandb", reason="make setup installs wandb for this test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = (*qvl_quick_run, "task.train_samples=8", "train.report_to=['wandb']", "train.eval_every=2",
              "eval.max_samples=4", "train.eval_samples=4")
    qvl_run_stage("colors", "train", *common)
    run_id = json.loads((qvl_run_dir / "trackers.json").read_text())["wandb"]
    (first,) = (qvl_run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    records = wandb_records(first)
    config = {item.key: json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "config"
              for item in r.config.update}
    assert config["train.lr"] == 0.003 and config["task_name"] == "colors"

    def history(records):
        rows = [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
                for r in records if r.WhichOneof("record_type") == "history"]
        return [(row["_step"], "val/loss" in row) for row in rows if "train/loss" in row]

    assert history(records) == [(1, False), (2, True)]
    pictures = {p.name.split("_")[0] for p in first.parent.glob("files/media/images/*.png")}
    assert "loss" in pictures
    # --resume to step 4: the same W&B run goes on, its settings are not logged again
    qvl_run_stage("colors", "train", *common, "train.steps=4", resume=True)
    assert json.loads((qvl_run_dir / "trackers.json").read_text())["wandb"] == run_id
    (second,) = set((qvl_run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")) - {first}
    resumed = wandb_records(second)
    assert history(resumed) == [(3, False), (4, True)]
    assert not [item for r in resumed if r.WhichOneof("record_type") == "config" for item in r.config.update
                if item.key == "train.lr"]
