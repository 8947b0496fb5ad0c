"""SASRec, TIGER, BBQRec (each score_mode) and BBQSASRec on Scientific-MM under one budget.

Prints test Recall@10 / NDCG@10 (best epoch chosen by valid NDCG@10), then BBQRec/TIGER ratios
of the train step time and the beam-inference time per batch, measured in this run.

Usage: python benchmarks/scientific_generative.py [--epochs 3] [--data-path /tmp/bench-data]
           [--config-files benchmarks/configs/cpu_small.yaml]
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recbole_bbq.compat  # noqa: E402,F401  (before recbole)

from recbole.utils import init_seed  # noqa: E402

from recbole_bbq.config import Config  # noqa: E402
from recbole_bbq.pipeline import prepare_semantic_ids  # noqa: E402
from recbole_bbq.utils import create_dataset, data_preparation, get_model, get_trainer  # noqa: E402

from _bench import ensure_dataset, median, timed  # noqa: E402

MODELS = ["SASRec", "TIGER", "BBQRec", "BBQSASRec"]


def train(model_name, base, config_files=None):
    """Train one model; return (config, model, trainer, test loader)."""
    ids = prepare_semantic_ids(model_name, "Scientific", config_files, config_dict=base, show_progress=False)
    config = Config(model_name, "Scientific", config_file_list=config_files, config_dict={**base, **ids})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    start = time.time()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False, verbose=False)
    print(f"  {model_name}: trained in {time.time() - start:.0f} s", flush=True)
    return config, model, trainer, train_data, test_data


def step_time(model, train_data, n=5):
    optimizer = torch.optim.Adam(model.parameters())

    def step(batch):
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()

    model.train()
    return median(timed(step, [b for _, b in zip(range(n), train_data)], model.device))


@torch.no_grad()
def beam_time(model, test_data, n=3):
    model.eval()
    return median(
        timed(lambda b: model.full_sort_predict(b[0]), [b for _, b in zip(range(n), test_data)], model.device)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data-path", default="/tmp/bench-data")
    parser.add_argument("--checkpoint-dir", default="/tmp/bench-saved")
    parser.add_argument(
        "--config-files", nargs="*", default=None, help="YAML files for every model (e.g. a smaller backbone)"
    )
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv; our flags are not its keys
    ensure_dataset("Scientific", args.data_path)
    base = {
        "data_path": args.data_path,
        "checkpoint_dir": args.checkpoint_dir,
        "epochs": args.epochs,
        "stopping_step": args.epochs,
        "seed": 2020,
        "state": "ERROR",
        "show_progress": False,
        "eval_batch_size": 256,
    }
    rows, timings = [], {}
    for name in MODELS:
        config, model, trainer, train_data, test_data = train(name, base, args.config_files)
        modes = ["beam", "dense", "fused"] if name == "BBQRec" else [None]
        for i, mode in enumerate(modes):
            if mode:
                model.score_mode = mode
            result = trainer.evaluate(test_data, load_best_model=i == 0)
            rows.append((name + (f" ({mode})" if mode else ""), result["recall@10"], result["ndcg@10"]))
        if name in ("TIGER", "BBQRec"):
            model.score_mode = "beam" if name == "BBQRec" else None
            timings[name] = (step_time(model, train_data), beam_time(model, test_data))
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"\nScientific-MM, {args.epochs} epochs each, seed 2020, {device}, config files {args.config_files}"
    )
    print(f"{'model':<20} {'Recall@10':>10} {'NDCG@10':>10}")
    for name, recall, ndcg in rows:
        print(f"{name:<20} {recall:>10.4f} {ndcg:>10.4f}")
    (tiger_step, tiger_beam), (bbq_step, bbq_beam) = timings["TIGER"], timings["BBQRec"]
    print(f"\n{'per batch':<22} {'TIGER s':>9} {'BBQRec s':>9} {'BBQRec/TIGER':>13}")
    print(f"{'train step':<22} {tiger_step:>9.3f} {bbq_step:>9.3f} {bbq_step / tiger_step:>13.2f}")
    print(f"{'beam inference':<22} {tiger_beam:>9.3f} {bbq_beam:>9.3f} {bbq_beam / tiger_beam:>13.2f}")


if __name__ == "__main__":
    main()
