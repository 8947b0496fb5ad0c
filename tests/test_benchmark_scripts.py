"""Benchmark scripts that must keep working without their device: CPU smoke runs."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_DIR


def test_instruments_gpu_script_runs_end_to_end_in_smoke_mode(tmp_path, instruments_slice):
    """benchmarks/instruments_gpu.sh with SMOKE=1 on the first 200 Instruments users, on CPU."""
    env = {
        **os.environ,
        "SMOKE": "1",
        "DATA": str(instruments_slice),
        "PYTHON": sys.executable,
        "JOB_SECONDS": "300",
    }
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", os.path.join(REPO_DIR, "benchmarks", "instruments_gpu.sh"), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = "\n".join(p.read_text()[-2000:] for p in (out / "logs").glob("*.log"))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    folder = out / "results" / "Instruments"
    for model in ("SASRec", "TIGER", "BBQRec"):
        record = json.loads((folder / "runs" / f"{model}-seed2020.json").read_text())
        assert record["status"] == "ok", (model, record.get("error"), logs)
        assert record["stop_reason"] and record["valid_curve"]
    tiger = json.loads((folder / "runs" / "TIGER-seed2020.json").read_text())
    assert tiger["config"]["train_batch_size"] == 2048
    assert (folder / "curves.png").is_file() and "| TIGER |" in done.stdout


def test_valid_test_gap_separates_data_shift_and_selection(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "gap", os.path.join(REPO_DIR, "benchmarks", "valid_test_gap.py")
    )
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    folder = tmp_path / "D"
    folder.mkdir()
    splits = {"train": ["u\ta\tb", "u\ta b\tc"], "valid": ["u\ta b c\tb"], "test": ["u\ta b c b\tz"]}
    for split, rows in splits.items():
        (folder / f"D.{split}.inter").write_text(
            "\n".join(["user_id:token\titem_id_list:token_seq\titem_id:token", *rows])
        )
    gap.main(["--data_path", str(tmp_path), "--dataset", "D"])  # prints; z is a cold test target
    rows = [(history.split(), target) for history, target in (r.split("\t")[1:] for r in splits["test"])]
    stats = gap.split_statistics(rows, seen={"a", "b", "c"}, target_counts={"b": 1, "c": 1})
    assert stats["cold target (never in train)"] == "100.0%"

    (tmp_path / "runs").mkdir()
    curve = [{"valid_score": s} for s in (0.1, 0.3, 0.2, 0.2)]
    record = {"status": "ok", "model": "M", "valid_curve": curve, "config": {"valid_metric": "NDCG@10"}}
    record["test_result"] = {"ndcg@10": 0.15}
    (tmp_path / "runs" / "M-seed1.json").write_text(json.dumps(record))
    best, around, test, count = gap.selection_rows(str(tmp_path))["M"]
    assert (best, test, count) == (0.3, 0.15, 4) and abs(around - 0.5 / 3) < 1e-12


def cold_start_module():
    sys.path.insert(0, os.path.join(REPO_DIR, "benchmarks"))
    import cold_start

    return cold_start


def test_cold_start_split_cuts_held_out_items_everywhere():
    cold_start = cold_start_module()
    rows = [("u1", ["a", "b"], "c"), ("u2", ["b"], "a"), ("u3", ["a"], "d")]
    assert cold_start.without_items(rows, {"a"}) == [("u1", ["b"], "c")]  # u3's history empties
    held = cold_start.held_out_items({f"i{n}" for n in range(100)}, 0.1, seed=0)
    assert len(held) == 10 and held == cold_start.held_out_items({f"i{n}" for n in range(100)}, 0.1, seed=0)


def test_cold_start_metrics_rank_single_targets():
    from recbole_bbq.recommend import Recommendation

    cold_start = cold_start_module()
    lists = [Recommendation("0", ["a", "b"]), Recommendation("1", ["c"]), Recommendation("2", [])]
    metrics = cold_start.ranking_metrics(lists, ["b", "c", "z"])
    assert metrics["recall@10"] == 2 / 3 and metrics["users"] == 3
    assert abs(metrics["ndcg@10"] - (1 / np.log2(3) + 1.0) / 3) < 1e-12


def test_cold_start_benchmark_adds_held_out_items_to_trained_models(tmp_path, scientific_slice):
    """benchmarks/cold_start.py end to end on 300 Scientific users, 1 epoch per model."""
    cold_start = cold_start_module()
    data_path = tmp_path / "data"
    shutil.copytree(scientific_slice, data_path)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        "epochs: 1\nshow_progress: false\nstate: ERROR\nd_model: 32\nn_layers: 1\nn_decoder_layers: 1\n"
        "n_heads: 2\nd_kv: 16\nd_ff: 64\nhidden_size: 32\nbehaviour: {epochs: 1}\n"
        "tokenizer: {epochs: 2, codebook_size: 16, latent_dim: 8, hidden_dim: 32}\n"
        "rqvae: {epochs: 2, codebook_size: 16, latent_dim: 8, hidden_dim: 32}\n"
        f"checkpoint_dir: {tmp_path / 'saved'}\n"
    )
    results = tmp_path / "results"
    arguments = [
        f"--data_path={data_path}",
        f"--results_dir={results}",
        "--models=BBQRec,TIGER,SASRec",
        "--seeds=1",
        f"--config_files={tiny}",
    ]
    cold_start.main(arguments)
    held = json.loads((data_path / "Scientific-cold" / "held_out_items.json").read_text())["items"]
    train = (data_path / "Scientific-cold" / "Scientific-cold.train.inter").read_text()
    assert held and not set(held) & set(train.split())
    out = results / "Scientific-cold" / "cold_start"
    records = {m: json.loads((out / f"{m}-seed1.json").read_text()) for m in ("BBQRec", "TIGER", "SASRec")}
    assert records["BBQRec"]["items_added"] and records["TIGER"]["items_added"]
    assert not records["SASRec"]["items_added"]
    assert records["SASRec"]["rows"]["SASRec"]["cold"]["recall@10"] == 0.0  # the floor
    bbqrec = records["BBQRec"]["rows"]
    modes = ("beam", "dense", "fused", "interpolate 0.3", "interpolate 1")
    assert list(bbqrec) == [
        f"BBQRec ({m}{suffix})" for suffix in ("", ", z_ID mean", ", z_ID nearest") for m in modes
    ]
    assert bbqrec["BBQRec (dense)"]["cold"]["users"] > 0 and bbqrec["BBQRec (dense)"]["warm"]["users"] > 0
    table = (results / "cold_start.md").read_text()
    assert "| BBQRec (dense) | 1 |" in table and "| TIGER | 1 |" in table
    # A cell evaluated by an earlier version of the rows is evaluated again; the training is reused.
    stale = out / "TIGER-seed1.json"
    stale.write_text(json.dumps({**records["TIGER"], "version": 1, "rows": {}}))
    cold_start.main(arguments)
    assert json.loads(stale.read_text())["rows"] == records["TIGER"]["rows"]


def test_valid_test_gap_splits_the_drop_by_target_popularity(tmp_path, monkeypatch):
    """Mix + within-bucket parts add up to the drop, from cached or freshly evaluated per-user values."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gap", os.path.join(REPO_DIR, "benchmarks", "valid_test_gap.py")
    )
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    assert [gap.popularity_bucket(c, [1, 5, 20]) for c in (0, 1, 4, 5, 19, 20, 99)] == [
        "0", "1-4", "1-4", "5-19", "5-19", "20+", "20+"
    ]  # fmt: skip
    # Valid targets: u1 -> popular p, u2 -> rare r; test targets: both rare.
    targets = {"valid": {"u1": "p", "u2": "r"}, "test": {"u1": "r", "u2": "r"}}
    counts = {"p": 30, "r": 2}
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    for seed in (1, 2):
        record = {"status": "ok", "model": "M", "seed": seed, "model_file": f"m{seed}.pth"}
        (runs / f"M-seed{seed}.json").write_text(json.dumps(record))
    evaluated = []

    def evaluate(model_file, trust=False):
        evaluated.append(model_file)
        users = {"users": ["u1", "u2"]}
        return {"valid": {**users, "ndcg@10": [0.6, 0.2]}, "test": {**users, "ndcg@10": [0.1, 0.3]}}

    monkeypatch.setattr(gap, "evaluate_per_user", evaluate)
    values = gap.per_user_values(str(tmp_path / "results"), model_root="root")
    assert evaluated == [os.path.join("root", "m1.pth"), os.path.join("root", "m2.pth")]
    assert gap.per_user_values(str(tmp_path / "results")) == values and len(evaluated) == 2  # cached
    row = gap.popularity_gap(values, targets, counts, [1, 5, 20])["M"]
    assert row["buckets"]["20+"] == {"valid_share": 0.5, "valid": 0.6, "test_share": 0.0, "test": 0.0}
    assert row["buckets"]["1-4"]["test"] == 0.2 and row["buckets"]["0"]["valid_share"] == 0.0
    assert abs(row["valid"] - 0.4) < 1e-12 and abs(row["test"] - 0.2) < 1e-12
    # Mix: half the users moved from a 0.6 bucket to a 0.2 one; within: 0.2 -> 0.2, no change.
    assert abs(row["mix"] - 0.2) < 1e-12 and abs(row["within"]) < 1e-12
    # A model file that does not reproduce the run's stored test values is refused.
    record = {
        **json.loads((runs / "M-seed1.json").read_text()),
        "test_per_user": {"users": ["u1"], "ndcg@10": [1]},
    }
    (runs / "M-seed1.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="M-seed1.json: m1.pth does not reproduce"):
        gap.per_user_values(str(tmp_path / "results"))
    # A run without per-user values is checked by its mean test value instead.
    record.pop("test_per_user")
    for mean, ok in ((0.2, True), (0.25, False)):
        (runs / "M-seed1.json").write_text(json.dumps({**record, "test_result": {"ndcg@10": mean}}))
        if ok:
            gap.per_user_values(str(tmp_path / "results"))
        else:
            with pytest.raises(SystemExit, match="does not reproduce"):
                gap.per_user_values(str(tmp_path / "results"))


def test_cold_start_table_weights_the_groups_by_users():
    cold_start = cold_start_module()

    def groups(cold, warm):
        return {
            "cold": {"ndcg@10": cold, "recall@10": cold, "users": 1},
            "warm": {"ndcg@10": warm, "recall@10": warm, "users": 3},
        }

    results = [
        {"rows": {"M": groups(0.4, 0.0)}, "items_added": True},
        {"rows": {"M": groups(0.0, 0.4)}, "items_added": True},
    ]
    assert cold_start.all_users(groups(0.4, 0.0), "ndcg@10") == 0.1
    row = cold_start.summary_table(results).splitlines()[-1]
    # all users: 0.1 and 0.3 over the two seeds.
    assert row.startswith("| M | 2 | 0.2000 ± 0.2828 |") and "| 0.2000 ± 0.1414 | yes |" in row


def test_select_by_valid_picks_on_valid_only_and_tests_against_the_reference(tmp_path):
    sys.path.insert(0, os.path.join(REPO_DIR, "benchmarks"))
    import select_by_valid

    users = [f"u{n}" for n in range(40)]
    rng = np.random.default_rng(0)

    def write(folder, model, seed, valid, test_mean, per_user=True):
        values = np.clip(test_mean + 0.05 * rng.normal(size=len(users)), 0, 1).round(6)
        record = {
            "status": "ok",
            "best_valid_score": valid,
            "test_result": {"ndcg@10": test_mean, "recall@10": 0.5},
        }
        if per_user:
            record["test_per_user"] = {"users": users, "ndcg@10": values.tolist()}
        else:  # an older run: its values sit in the valid_test_gap cache
            cache = folder / "valid_test_gap" / f"{model}-seed{seed}.json"
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"test": {"users": users, "ndcg@10": values.tolist()}}))
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        (folder / "runs" / f"{model}-seed{seed}.json").write_text(json.dumps(record))

    default, tuned = tmp_path / "default", tmp_path / "tuned"
    for seed in (1, 2):
        write(default, "A", seed, valid=0.30, test_mean=0.5, per_user=False)  # better test, lower valid
        write(tuned, "A", seed, valid=0.31, test_mean=0.2)
        write(default, "R", seed, valid=0.20, test_mean=0.1)
    write(tuned, "R", 1, valid=0.9, test_mean=0.9)  # one seed only: does not compete
    out = tmp_path / "selected.md"
    select_by_valid.main(["--models", "A,R", "--reference", "R", "--seeds", "1,2", "--out", str(out),
                          f"default={default}", f"tuned={tuned}"])  # fmt: skip
    rows = {line.split(" | ")[0].strip("| "): line for line in out.read_text().splitlines()[2:]}
    assert "| tuned | 0.3100 | 0.2000 ± 0.0000 |" in rows["A"] and "(p " in rows["A"]
    assert "| default | 0.2000 | 0.1000 ± 0.0000 |" in rows["R"] and rows["R"].endswith("| reference |")
    with pytest.raises(SystemExit, match="B: no comparison has all seeds"):
        select_by_valid.selection_table({"default": str(default)}, ["B"], [1, 2], "R")
