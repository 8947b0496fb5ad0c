"""Padding-aware generative batches, length bucketing, the optimisation recipe, mixed precision,
recorded valid curves, stop reasons and resumable runs."""

import numpy as np
import pytest
import torch

from recbole_bbq.config import Config
from recbole_bbq.data.dataloader import LengthBucketedTrainDataLoader, bucketed_order
from recbole_bbq.errors import ConfigError
from recbole_bbq.pipeline import prepare_semantic_ids
from recbole_bbq.schedule import lr_multiplier, warmup_steps
from recbole_bbq.trainer import STOP_BUDGET, STOP_EARLY, STOP_EPOCHS, Trainer
from recbole_bbq.utils import create_dataset, data_preparation, get_model

from conftest import tiny_config
from test_generative import bbqrec, build, model_config, tiny_root  # noqa: F401  (fixture)


def short_histories(interaction, model, keep=3):
    """The batch with every history cut to its first ``keep`` items (still valid, left-aligned)."""
    interaction[model.ITEM_SEQ_LEN] = interaction[model.ITEM_SEQ_LEN].clamp(max=keep)
    return interaction


def twin(model_name, tmp_path, tiny_root, **overrides):  # noqa: F811
    """Two models with the same weights: padding trimmed, and not."""
    config_dict = model_config(tmp_path, tiny_root, **overrides)
    config_dict.update(prepare_semantic_ids(model_name, "tiny", config_dict=config_dict, show_progress=False))
    _, trimmed, test = build(model_name, config_dict)
    _, full, _ = build(model_name, {**config_dict, "trim_padding": False})
    full.load_state_dict(trimmed.state_dict())
    return trimmed, full, test


@pytest.mark.parametrize("positions", ["from_latest", "from_oldest"])
def test_trimmed_batches_give_the_same_logits_loss_and_bias(tmp_path, tiny_root, positions):  # noqa: F811
    trimmed, full, test = twin("BBQRec", tmp_path, tiny_root, item_positions=positions, score_mode="fused")
    trimmed.similarity_bias.weight.weight.data.normal_()  # a live similarity bias
    full.similarity_bias.weight.weight.data.copy_(trimmed.similarity_bias.weight.weight.data)
    batch = short_histories(next(iter(test))[0], trimmed)
    levels = trimmed.item_codes.shape[1]
    with torch.no_grad():
        short, padded = trimmed.recent_history(batch), full.recent_history(batch)
        assert short.shape[1] == 3 < padded.shape[1] == trimmed.history_length
        assert torch.equal(padded[:, :3], short) and (padded[:, 3:] == 0).all()
        # The similarity bias of the cut batch is the top-left block of the uncut one.
        bias, full_bias = trimmed.attention_bias(short), full.attention_bias(padded)
        torch.testing.assert_close(bias, full_bias[:, :, : 3 * levels, : 3 * levels], rtol=0, atol=0)
        memory, mask, _ = trimmed.encode(batch)
        full_memory, full_mask, _ = full.encode(batch)
        real = torch.isfinite(full_mask[:, 0, 0])
        assert memory.shape[1] == 3 * levels and not real[:, 3 * levels :].any()
        torch.testing.assert_close(memory, full_memory[:, : 3 * levels], rtol=1e-5, atol=1e-5)
        targets = batch[trimmed.POS_ITEM_ID]
        for got, want in zip(
            trimmed.backbone.teacher_forcing_logits(memory, mask, trimmed.item_codes[targets]),
            full.backbone.teacher_forcing_logits(full_memory, full_mask, full.item_codes[targets]),
        ):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            trimmed.calculate_loss(batch), full.calculate_loss(batch), rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            trimmed.full_sort_predict(batch), full.full_sort_predict(batch), rtol=1e-4, atol=1e-4
        )


def test_positions_count_back_from_the_latest_item(tmp_path, tiny_root):  # noqa: F811
    _, model, _ = bbqrec(tmp_path, tiny_root)
    history = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    assert model.item_position_ids(history).tolist() == [[2, 1, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ConfigError, match="item_positions"):
        bbqrec(tmp_path, tiny_root, item_positions="random")


def test_bucketed_order_is_a_permutation_of_similar_length_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 21, size=1000)
    generator = torch.Generator().manual_seed(0)
    order = bucketed_order(lengths, 50, 50, generator)
    assert sorted(order.tolist()) == list(range(1000))
    spread = [np.ptp(lengths[order[i : i + 50]]) for i in range(0, 1000, 50)]
    random_spread = [np.ptp(lengths[i : i + 50]) for i in range(0, 1000, 50)]
    assert np.mean(spread) < 0.2 * np.mean(random_spread)
    again = bucketed_order(lengths, 50, 50, generator)
    assert not np.array_equal(order, again)  # a new order every epoch


def test_bucketed_loader_yields_every_row_once_per_epoch(tmp_path):
    config = Config(
        "SASRec", "tiny", config_dict=tiny_config(tmp_path, length_bucketing=True, train_batch_size=16)
    )
    train, _, _ = data_preparation(config, create_dataset(config))
    assert isinstance(train, LengthBucketedTrainDataLoader)
    rows = len(train._dataset)
    epochs = []
    for _ in range(2):
        seen = []
        for batch in train:
            seen += list(
                zip(batch["user_id"].tolist(), batch["item_length"].tolist(), batch["item_id"].tolist())
            )
        assert len(seen) == rows
        epochs.append(seen)
    assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]


def test_lr_schedules():
    assert warmup_steps(0.1, 200) == 20 and warmup_steps(30, 200) == 30 and warmup_steps(0, 200) == 0
    with pytest.raises(ConfigError, match="warmup"):
        warmup_steps(-1, 10)
    assert [lr_multiplier("constant", s, 4, 100) for s in (0, 3, 4, 99)] == [0.25, 1.0, 1.0, 1.0]
    assert lr_multiplier("cosine", 10, 10, 110) == pytest.approx(1.0)
    assert lr_multiplier("cosine", 60, 10, 110) == pytest.approx(0.5)
    assert lr_multiplier("cosine", 110, 10, 110, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_multiplier("inverse_sqrt", 400, 100, 1000) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="lr_scheduler"):
        lr_multiplier("linear", 5, 0, 10)


def sasrec_trainer(tmp_path, **overrides):
    config = Config("SASRec", "tiny", config_dict=tiny_config(tmp_path, **overrides))
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return Trainer(config, get_model("SASRec")(config, train._dataset)), train, valid, test


def test_trainer_applies_adamw_warmup_cosine_and_clipping(tmp_path):
    trainer, train, valid, _ = sasrec_trainer(
        tmp_path,
        epochs=2,
        learner="adamw",
        weight_decay=0.01,
        lr_scheduler="cosine",
        warmup=0.25,
        learning_rate=0.01,
        clip_grad_norm={"max_norm": 1.0},
    )
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.01
    trainer.fit(train, valid, saved=False, show_progress=False)
    steps = 2 * len(train)
    assert trainer.lr_scheduler.last_epoch == steps  # stepped once per batch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine end
    first = trainer.valid_curve[0]["learning_rate"]
    assert first == pytest.approx(0.01 * lr_multiplier("cosine", len(train), round(0.25 * steps), steps))


def test_schedule_horizon_shorter_than_the_epoch_cap(tmp_path):
    """Past the horizon the rate stays 0; once a validation has seen those frozen weights the run
    stops (RecBole's patience counts the equal scores that follow as improvements)."""
    trainer, train, valid, _ = sasrec_trainer(
        tmp_path, epochs=6, lr_scheduler="cosine", lr_schedule_epochs=2, stopping_step=10
    )
    trainer.fit(train, valid, saved=False, show_progress=False)
    assert [p["learning_rate"] for p in trainer.valid_curve][-1] == 0.0
    assert trainer.epochs_trained == 2 and trainer.stop_reason == STOP_EARLY


def test_valid_curve_and_stop_reasons(tmp_path):
    trainer, train, valid, _ = sasrec_trainer(tmp_path, epochs=2)
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert trainer.stop_reason == STOP_EPOCHS
    assert trainer.tensorboard.all_writers is None  # closed: no flush thread outlives the run
    assert [p["epoch"] for p in trainer.valid_curve] == [1, 2] and trainer.epochs_trained == 2
    assert set(trainer.valid_curve[0]) >= {
        "valid_score",
        "valid_result",
        "train_loss",
        "learning_rate",
        "seconds",
    }

    trainer, train, valid, _ = sasrec_trainer(tmp_path, epochs=10, stopping_step=1)
    scores = iter([0.5, 0.4, 0.3, 0.2])
    original = trainer._valid_epoch
    trainer._valid_epoch = lambda data, show_progress=False: (next(scores), original(data)[1])
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert trainer.stop_reason == STOP_EARLY and len(trainer.valid_curve) == 3

    trainer, train, valid, _ = sasrec_trainer(tmp_path, epochs=5, max_train_seconds=1e-9)
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert trainer.stop_reason == STOP_BUDGET and len(trainer.valid_curve) == 1


def test_cut_short_run_resumes_from_its_last_validation(tmp_path):
    settings = dict(epochs=3, checkpoint_name="cell", lr_scheduler="cosine")
    whole, train, valid, test = sasrec_trainer(tmp_path / "whole", **settings)
    whole.fit(train, valid, saved=True, show_progress=False)

    cut, train, valid, _ = sasrec_trainer(tmp_path / "cut", **settings)
    original = cut._train_epoch

    def interrupted(data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise KeyboardInterrupt  # the session ends during the last epoch
        return original(data, epoch_idx, *args, **kwargs)

    cut._train_epoch = interrupted
    with pytest.raises(KeyboardInterrupt):
        cut.fit(train, valid, saved=True, show_progress=False)

    resumed, train, valid, test = sasrec_trainer(tmp_path / "cut", **settings)
    epochs = []
    original = resumed._train_epoch
    resumed._train_epoch = lambda data, epoch_idx, *a, **k: (
        epochs.append(epoch_idx) or original(data, epoch_idx, *a, **k)
    )
    resumed.fit(train, valid, saved=True, show_progress=False)
    assert epochs == [2]  # not from epoch 0
    assert [p["epoch"] for p in resumed.valid_curve] == [1, 2, 3] and resumed.stop_reason == STOP_EPOCHS
    assert resumed.epochs_trained == 3
    for got, want in zip(resumed.valid_curve, whole.valid_curve):
        assert got["valid_score"] == pytest.approx(want["valid_score"], abs=1e-6)
        assert got["learning_rate"] == pytest.approx(want["learning_rate"])
    assert resumed.evaluate(test) == pytest.approx(whole.evaluate(test))

    # A finished run found again (the record was not written) is not trained a second time.
    again, train, valid, _ = sasrec_trainer(tmp_path / "cut", **settings)
    again._train_epoch = lambda *a, **k: pytest.fail("a finished run trained again")
    assert again.fit(train, valid, saved=True, show_progress=False)[0] == resumed.best_valid_score


def test_bf16_training_step_on_cpu(tmp_path, tiny_root):  # noqa: F811
    config_dict = model_config(tmp_path, tiny_root, semantic_ids_from="published", mixed_precision="bf16")
    config_dict.update(prepare_semantic_ids("TIGER", "tiny", config_dict=config_dict, show_progress=False))
    config = Config("TIGER", "tiny", config_dict=config_dict)
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = get_model("TIGER")(config, train._dataset)
    seen = []
    original = model.calculate_loss
    model.calculate_loss = lambda batch: (
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")) or original(batch)
    )
    trainer = Trainer(config, model)
    default_dtype = torch.get_autocast_dtype("cpu")
    trainer.fit(train, valid, saved=False, show_progress=False)
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    assert np.isfinite(trainer.valid_curve[0]["train_loss"])
    assert torch.get_autocast_dtype("cpu") == default_dtype  # restored after the epoch
    with pytest.raises(ConfigError, match="mixed_precision"):
        Trainer(Config("TIGER", "tiny", config_dict={**config_dict, "mixed_precision": "int8"}), model)
