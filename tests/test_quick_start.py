"""RecBole built-in sequential models train, reload their best checkpoint and evaluate."""

import math
import os

import pytest

from recbole_bbq.quick_start import run_recbole_bbq
from recbole_bbq.trainer import load_checkpoint

from conftest import tiny_config

TOPK = [5, 10, 20]
METRICS = ["Recall", "NDCG"]


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec", "BERT4Rec", "FDSA"])
def test_builtin_model_trains_reloads_and_evaluates(tmp_path, model):
    config = tiny_config(tmp_path, metrics=METRICS, topk=TOPK)
    result = run_recbole_bbq(model, "tiny", config_dict=config)

    expected = {f"{m.lower()}@{k}" for m in METRICS for k in TOPK}
    for split in ("best_valid_result", "test_result"):
        assert set(result[split]) == expected
        assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result[split].values())

    checkpoints = os.listdir(tmp_path / "saved")
    assert len(checkpoints) == 1 and checkpoints[0].startswith(f"{model}-")
    state = load_checkpoint(tmp_path / "saved" / checkpoints[0], "cpu")
    assert state["config"]["model"] == model and state["state_dict"]


def test_test_result_comes_from_the_reloaded_best_checkpoint(tmp_path):
    """Two epochs: the reported test result must be that of the best-valid epoch's weights."""
    from recbole_bbq.config import Config
    from recbole_bbq.trainer import Trainer
    from recbole_bbq.utils import create_dataset, data_preparation, get_model

    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, epochs=2))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    trainer = Trainer(config, get_model("SASRec")(config, train._dataset))
    trainer.fit(train, valid, saved=True, show_progress=False)
    reloaded = trainer.evaluate(test, load_best_model=True)

    fresh = Trainer(config, get_model("SASRec")(config, train._dataset))
    assert fresh.evaluate(test, load_best_model=True, model_file=trainer.saved_model_file) == reloaded


def test_max_train_seconds_stops_after_the_first_validated_epoch(tmp_path):
    """A spent time budget ends training before the next epoch and keeps the best checkpoint."""
    from recbole_bbq.config import Config
    from recbole_bbq.trainer import Trainer
    from recbole_bbq.utils import create_dataset, data_preparation, get_model

    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, epochs=5, max_train_seconds=1e-9))
    train, valid, test = data_preparation(config, create_dataset(config))
    trainer = Trainer(config, get_model("SASRec")(config, train._dataset))
    epochs = []
    original = trainer._train_epoch
    trainer._train_epoch = lambda *args, **kwargs: epochs.append(args[1]) or original(*args, **kwargs)
    score, result = trainer.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [0, 1]  # epoch 1 is refused: the budget is spent and epoch 0 was validated
    assert result is not None and score == trainer.best_valid_score
    assert set(trainer.evaluate(test, load_best_model=True)) == set(result)


def test_runs_started_together_get_their_own_checkpoint_files(tmp_path):
    from recbole_bbq.config import Config
    from recbole_bbq.trainer import Trainer
    from recbole_bbq.utils import create_dataset, get_model

    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    dataset = create_dataset(config)
    files = {Trainer(config, get_model("SASRec")(config, dataset)).saved_model_file for _ in range(3)}
    assert len(files) == 3 and all(os.path.basename(f).startswith("SASRec-") for f in files)
