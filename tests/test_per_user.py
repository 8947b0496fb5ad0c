"""Per-user test metrics: RecBole's evaluator per user, stored for test users only, the paired
test over users (Wilcoxon, bootstrap interval), the reference column, and runs without test."""

import csv
import json
import shutil

import numpy as np
import pytest
from scipy.stats import bootstrap, wilcoxon

import recbole_bbq.compare.per_user as per_user
import recbole_bbq.compare.runner as runner
import recbole_bbq.quick_start as quick_start
from recbole_bbq.compare import run_comparison
from recbole_bbq.config import Config
from recbole_bbq.errors import ConfigError
from recbole_bbq.evaluation import USER_IDS
from recbole_bbq.trainer import CompatTrainerMixin, Trainer
from recbole_bbq.utils import create_dataset, data_preparation, get_model

from conftest import TEST_DATA, free_port, tiny_config
from test_compare import fake_pipeline

ALL_TOPK_METRICS = ["Recall", "NDCG", "Hit", "MRR", "Precision", "MAP"]


def exact_config(tmp_path, **overrides):
    """A tiny config whose reported metrics are not rounded to RecBole's 4 decimals."""
    return tiny_config(tmp_path, metric_decimal_place=12, **overrides)


def trained(tmp_path, **overrides):
    """A 1-epoch SASRec trainer on ``tiny`` and its dataset and valid/test loaders."""
    config = Config("SASRec", "tiny", config_dict=exact_config(tmp_path, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    trainer = Trainer(config, get_model("SASRec")(config, train._dataset))
    trainer.fit(train, valid, saved=True, show_progress=False)
    return trainer, dataset, valid, test


def loader_users(loader):
    """The user id of every evaluated row of an evaluation loader (full ranking: one per row)."""
    return loader._dataset.inter_feat[loader._dataset.uid_field].numpy()


def test_per_user_columns_average_to_recboles_metrics(tmp_path):
    trainer, _, valid, test = trained(tmp_path, metrics=ALL_TOPK_METRICS)
    result = trainer.evaluate(test, load_best_model=True)
    values = trainer.last_per_user
    assert set(values) == {"users", *result}
    for name, reported in result.items():
        assert len(values[name]) == len(values["users"])
        assert abs(float(np.mean(values[name])) - reported) < 1e-6, name
    np.testing.assert_array_equal(values["users"], loader_users(test))

    # The collector forgets each evaluation's users, as RecBole forgets rec.topk.
    assert USER_IDS not in trainer.eval_collector.data_struct
    trainer.evaluate(valid, load_best_model=False)
    np.testing.assert_array_equal(trainer.last_per_user["users"], loader_users(valid))
    trainer.evaluate(test, load_best_model=False)
    np.testing.assert_array_equal(trainer.last_per_user["users"], values["users"])


def test_sampled_negatives_give_one_user_per_score_row(tmp_path):
    """Sampled-negative evaluation scores one row per user from several interaction rows."""
    mode = {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "uni10"}
    trainer, _, _, test = trained(tmp_path, eval_args=mode, eval_batch_size=7)
    result = trainer.evaluate(test, load_best_model=True)
    users = trainer.last_per_user["users"]
    assert len(users) == len(set(users)) == len(set(loader_users(test)))
    for name, reported in result.items():
        assert abs(float(np.mean(trainer.last_per_user[name])) - reported) < 1e-6, name


def tiny_with_extra_users(tmp_path):
    """``tiny`` plus two short histories. A sequential dataset splits its (history, target) rows:
    u_two has one row (train only), u_three two rows (one train, one test, none in valid)."""
    root = tmp_path / "data"
    shutil.copytree(f"{TEST_DATA}/tiny", root / "tiny")
    with open(root / "tiny" / "tiny.inter", "a", encoding="utf-8") as f:
        for user, items in (("u_two", ("i7", "i8")), ("u_three", ("i3", "i4", "i5"))):
            f.writelines(f"{user}\t{item}\t5\t{1000000 + 100 * n}\n" for n, item in enumerate(items))
    return str(root)


def test_a_run_stores_the_test_users_only(tmp_path):
    config = exact_config(tmp_path, data_path=tiny_with_extra_users(tmp_path))
    result = quick_start.run_recbole_bbq("SASRec", "tiny", config_dict=config)
    stored = result["test_per_user"]
    # The metrics at the valid metric's cut-off (NDCG@10) only, to keep records small.
    assert list(stored) == ["users", "recall@10", "ndcg@10"]
    users = stored["users"]
    assert "u_three" in users and "u_two" not in users
    assert len(users) == len(set(users)) == 41 and all(isinstance(u, str) for u in users)
    for name in ("recall@10", "ndcg@10"):
        assert abs(float(np.mean(stored[name])) - result["test_result"][name]) < 1e-6  # 6 decimals
        assert all(round(v, 6) == v for v in stored[name])
    assert not any("valid" in key and "per_user" in key for key in result)


def test_without_test_the_test_split_is_never_evaluated(tmp_path, monkeypatch):
    loaders, evaluated = {}, []
    real_preparation, real_evaluate = quick_start.data_preparation, CompatTrainerMixin.evaluate

    def preparation(config, dataset):
        loaders["train"], loaders["valid"], loaders["test"] = real_preparation(config, dataset)
        return loaders["train"], loaders["valid"], loaders["test"]

    def evaluate(self, eval_data, *args, **kwargs):
        evaluated.append(eval_data)
        return real_evaluate(self, eval_data, *args, **kwargs)

    monkeypatch.setattr(quick_start, "data_preparation", preparation)
    monkeypatch.setattr(CompatTrainerMixin, "evaluate", evaluate)
    result = quick_start.run_recbole_bbq("SASRec", "tiny", config_dict=tiny_config(tmp_path), test=False)
    assert result["test_result"] is None and result["test_per_user"] is None
    assert result["best_valid_result"] and evaluated and all(e is loaders["valid"] for e in evaluated)

    evaluated.clear()
    result = quick_start.objective_function(tiny_config(tmp_path, model="SASRec", dataset="tiny"), test=False)
    assert result["test_result"] is None and loaders["test"] not in evaluated

    evaluated.clear()
    result = quick_start.run_recbole_bbq("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    assert [e for e in evaluated if e is loaders["test"]] == [loaders["test"]] and result["test_result"]


def test_run_pipeline_passes_test_through(tmp_path, monkeypatch):
    from recbole_bbq.pipeline import run_pipeline

    seen = []
    monkeypatch.setattr(quick_start, "run_recbole_bbq", lambda *args, **kwargs: seen.append(kwargs["test"]))
    run_pipeline("SASRec", "tiny", config_dict=tiny_config(tmp_path), test=False)
    run_pipeline("SASRec", "tiny", config_dict=tiny_config(tmp_path))
    assert seen == [False, True]


def test_a_multi_process_run_stores_no_per_user_values(tmp_path):
    config = tiny_config(tmp_path, use_gpu=False)
    result = quick_start.run("SASRec", "tiny", config_dict=config, nproc=2, port=free_port())
    assert result["test_result"] and result["test_per_user"] is None


# -----------------------------------------------------------------------------------------------
# The paired test over users, on hand-made records
# -----------------------------------------------------------------------------------------------

USERS = [f"u{i}" for i in range(1, 31)]


# Each user's made-up ability; users below 0.3 score 0 with every model (ties the test drops).
ABILITY = np.random.default_rng(0).random(len(USERS))


def user_scores(shift, seed):
    """Per-user ndcg@10 of a made-up model: ability + ``shift`` + per-seed noise, 6 decimals."""
    noise = np.random.default_rng(seed).normal(0.0, 0.05, len(USERS))
    values = np.where(ABILITY < 0.3, 0.0, np.clip(ABILITY + shift + noise, 0.0, 1.0))
    return [round(float(v), 6) for v in values]


def record(seed, scores, users=USERS, with_per_user=True):
    record = {
        "status": "ok",
        "seed": seed,
        "valid_metric": "NDCG@10",
        "best_valid_score": 0.1,
        "test_result": {"ndcg@10": float(np.mean(scores))},
    }
    if with_per_user:
        record["test_per_user"] = {"users": list(users), "ndcg@10": list(scores)}
    return record


def write_records(out, records):
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for (label, seed), value in records.items():
        (out / "runs" / f"{label}-seed{seed}.json").write_text(json.dumps(value))


def hand_made_records():
    """SASRec better than GRU4Rec; GRU4Rec's seed 3 is an old record without per-user values and
    its seed 2 lacks user u30 (users are aligned by token: u30 is left out)."""
    return {
        ("SASRec", 1): record(1, user_scores(0.05, 11)),
        ("SASRec", 2): record(2, user_scores(0.05, 12)),
        ("SASRec", 3): record(3, user_scores(0.05, 13)),
        ("GRU4Rec", 1): record(1, user_scores(0.0, 21)),
        ("GRU4Rec", 2): record(2, user_scores(0.0, 22)[:-1], users=USERS[:-1]),
        ("GRU4Rec", 3): record(3, user_scores(0.0, 23), with_per_user=False),
    }


def expected_test(records, first, second, seeds):
    """The test computed directly: per-user means over the seeds, scipy's wilcoxon and bootstrap."""
    users = sorted(USERS[:-1])

    def means(label):
        per_seed = [dict(zip(USERS, records[label, s]["test_per_user"]["ndcg@10"])) for s in seeds]
        return np.array([np.mean([values[u] for values in per_seed]) for u in users])

    differences = means(first) - means(second)
    p = wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue
    interval = bootstrap(
        (differences,),
        np.mean,
        n_resamples=10000,
        batch=per_user.bootstrap_chunk(len(users)),
        method="percentile",
        rng=np.random.default_rng(per_user.BOOTSTRAP_SEED),
    ).confidence_interval
    return differences, p, (interval.low, interval.high)


def test_paired_test_pools_seeds_per_user_and_matches_scipy():
    records = hand_made_records()
    test = per_user.per_user_test(records, "SASRec", "GRU4Rec", [1, 2, 3], "ndcg@10")
    differences, p, interval = expected_test(records, "SASRec", "GRU4Rec", [1, 2])
    assert test["seeds"] == [1, 2] and test["n_users"] == 29
    assert test["mean_difference"] == pytest.approx(differences.mean(), rel=1e-12)
    assert test["n_differing"] == np.count_nonzero(differences)
    assert test["p"] == pytest.approx(p, rel=1e-12) and test["note"] == ""
    assert test["interval"] == pytest.approx(interval, rel=1e-9)
    assert test["interval"][0] < test["mean_difference"] < test["interval"][1]

    repeated = {"status": "ok", "test_per_user": {"users": ["a", "a", "b"], "ndcg@10": [0.0, 1.0, 0.5]}}
    assert per_user.user_values(repeated, "ndcg@10") == {"a": 0.5, "b": 0.5}  # a user's rows averaged

    same = per_user.per_user_test(records, "SASRec", "SASRec", [1, 2], "ndcg@10")
    assert same["p"] is None and same["mean_difference"] == 0.0 and "same in both rows" in same["note"]
    old = per_user.per_user_test(records, "SASRec", "GRU4Rec", [3], "ndcg@10")
    assert old["n_users"] == 0 and old["note"].startswith("no per-user values stored (GRU4Rec")


def test_report_prints_the_per_user_test(tmp_path):
    records, out = hand_made_records(), tmp_path / "r" / "tiny"
    write_records(out, records)
    summary = run_comparison(
        ["GRU4Rec", "SASRec"],
        "tiny",
        [1, 2, 3],
        config_dict=tiny_config(tmp_path),
        results_dir=str(tmp_path / "r"),
        report_only=True,
    )
    differences, p, (low, high) = expected_test(records, "SASRec", "GRU4Rec", [1, 2])
    report = open(summary["markdown"], encoding="utf-8").read()
    interval = f"[{low:+.4f}, {high:+.4f}]"
    assert (
        f"| ndcg@10 | SASRec | GRU4Rec | 1, 2 | 29 | {differences.mean():+.4f} | {interval} | {p:.4f} |"
        in report
    )
    assert (
        "`scipy.stats.wilcoxon`, two-sided, `zero_method='wilcox'`" in report and "10000 resamples" in report
    )
    assert summary["per_user_test"]["p"] == pytest.approx(p, rel=1e-12)
    with open(summary["protocol"], encoding="utf-8") as f:
        assert "vs SASRec" not in report and "compare_reference" not in json.load(f)


def test_reports_on_records_without_per_user_values(tmp_path):
    records = {
        key: {k: v for k, v in value.items() if k != "test_per_user"}
        for key, value in hand_made_records().items()
    }
    out = tmp_path / "r" / "tiny"
    write_records(out, records)
    options = dict(config_dict=tiny_config(tmp_path), results_dir=str(tmp_path / "r"), report_only=True)
    summary = run_comparison(["GRU4Rec", "SASRec"], "tiny", [1, 2, 3], **options)
    report = open(summary["markdown"], encoding="utf-8").read()
    assert "Per-user test (ndcg@10, SASRec vs GRU4Rec): no per-user values stored (SASRec, GRU4Rec" in report
    assert "| ndcg@10 | SASRec | GRU4Rec | 3 |" in report  # the over-seeds t-test is still there

    options["config_dict"] = tiny_config(tmp_path, compare_reference="SASRec")
    table = run_comparison(["GRU4Rec", "SASRec"], "tiny", [1, 2, 3], **options)["table"]
    assert "| no per-user values |" in table and "| reference |" in table


def test_reference_column_tests_every_row_against_the_reference(tmp_path):
    records = hand_made_records()
    records.update({("BERT4Rec", s): record(s, user_scores(0.02, 30 + s)) for s in (1, 2, 3)})
    write_records(tmp_path / "r" / "tiny", records)
    config = tiny_config(tmp_path, compare_reference="SASRec")
    options = dict(config_dict=config, results_dir=str(tmp_path / "r"), report_only=True)
    summary = run_comparison(["SASRec", "GRU4Rec", "BERT4Rec"], "tiny", [1, 2, 3], **options)

    tests = summary["reference_tests"]
    assert set(tests) == {"GRU4Rec", "BERT4Rec"} and tests["BERT4Rec"]["seeds"] == [1, 2, 3]
    differences, p, _ = expected_test(records, "GRU4Rec", "SASRec", [1, 2])
    assert tests["GRU4Rec"]["p"] == pytest.approx(p, rel=1e-12)
    header = summary["table"].splitlines()[0]
    assert header.startswith("| model | ndcg@10 | vs SASRec: Δ ndcg@10 (p) | n seeds |")
    assert f"| {differences.mean():+.4f} (p {p:.4f}) |" in summary["table"]
    assert "| reference |" in summary["table"].splitlines()[2]  # the SASRec row
    report = open(summary["markdown"], encoding="utf-8").read()
    assert "- Reference row (`compare_reference`): `SASRec`" in report
    with open(summary["protocol"], encoding="utf-8") as f:
        assert json.load(f)["compare_reference"] == "SASRec"
    with open(summary["csv"], newline="", encoding="utf-8") as f:
        rows = {row["model"]: row for row in csv.DictReader(f)}
    assert float(rows["GRU4Rec"]["vs_SASRec_ndcg@10_p"]) == pytest.approx(p, rel=1e-12)
    assert rows["SASRec"]["vs_SASRec_ndcg@10_p"] == ""

    options["config_dict"] = dict(config, compare_reference="BBQRec")
    with pytest.raises(ConfigError, match=r"compare_reference 'BBQRec' \(from config_dict\) is not a row"):
        run_comparison(["SASRec", "GRU4Rec"], "tiny", [1], **options)


def test_reference_on_the_command_line_is_a_report_setting(tmp_path, monkeypatch):
    """``--compare_reference=`` shapes the report only: cells keep their settings (and checkpoints)."""
    monkeypatch.setattr(runner, "run_pipeline", fake_pipeline())
    argv = ["run_recbole_bbq.py", "--model=SASRec,GRU4Rec", "--seeds=1", "--compare_reference=GRU4Rec"]
    options = dict(config_dict=tiny_config(tmp_path), results_dir=str(tmp_path / "r"), show_progress=False)
    summary = run_comparison(["SASRec", "GRU4Rec"], "tiny", [1], argv=argv, **options)
    assert (
        set(summary["reference_tests"]) == {"SASRec"} and "| vs GRU4Rec: Δ ndcg@10 (p) |" in summary["table"]
    )
    assert summary["runs"]["SASRec", 1]["settings"]["cmd_overrides"] == []
    with pytest.raises(ConfigError, match=r"'NoSuchRow' \(from the command line\)"):
        run_comparison(["SASRec"], "tiny", [1], argv=[*argv, "--compare_reference=NoSuchRow"], **options)
