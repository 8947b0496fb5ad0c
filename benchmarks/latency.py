"""Beam-inference latency and throughput of TIGER and BBQRec (the paper's inference-speed analysis).

Both models are built at their default sizes (TIGER: d_model 128, 4+4 layers, beam 20) on the
same dataset, in eval mode; weights are untrained, which does not change the amount of work.
Per-user latency is a batch of one user (median and p90 over ``--users``); throughput is the
time of a full batch of ``--batch-size`` users (median over ``--repeats``).

Usage:
    python benchmarks/latency.py [--dataset Scientific] [--device cpu|cuda] [--users 50]
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recbole_bbq.compat  # noqa: E402,F401  (before recbole)

from recbole.utils import init_seed  # noqa: E402

from recbole_bbq.config import Config  # noqa: E402
from recbole_bbq.pipeline import prepare_semantic_ids  # noqa: E402
from recbole_bbq.utils import create_dataset, data_preparation, get_model  # noqa: E402

from _bench import device_name, ensure_dataset, median, timed  # noqa: E402

MODELS = ["TIGER", "BBQRec"]


def build(model_name, dataset, base):
    """An untrained model in eval mode and one large test batch on its device."""
    config_dict = {**base, **prepare_semantic_ids(model_name, dataset, config_dict=base, show_progress=False)}
    config = Config(model_name, dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = get_model(model_name)(config, train_data._dataset).to(config["device"]).eval()
    return config, model, next(iter(test_data))[0].to(config["device"])


@torch.no_grad()
def measure(model, batch, users, repeats, device):
    """(per-user seconds [users], full-batch seconds [repeats]) of ``full_sort_predict``."""
    predict = model.full_sort_predict
    predict(batch[:1]), predict(batch)  # warm-up (allocator, kernels)
    single = timed(predict, [batch[i : i + 1] for i in range(min(users, len(batch)))], device)
    full = timed(predict, [batch] * repeats, device)
    return single, full


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", default="Scientific", help="Scientific or Instruments (converted if missing)"
    )
    parser.add_argument("--data-path", default="/tmp/bench-data")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--users", type=int, default=50, help="batch-1 calls timed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--tokenizer-epochs", type=int, default=100, help="behaviour/tokenizer budget (cached)"
    )
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    ensure_dataset(args.dataset, args.data_path)
    base = {
        "data_path": args.data_path,
        "seed": 2020,
        "state": "ERROR",
        "show_progress": False,
        "eval_batch_size": args.batch_size,
        "use_gpu": args.device.startswith("cuda"),
        "behaviour": {"epochs": min(20, args.tokenizer_epochs)},
        "tokenizer": {"epochs": args.tokenizer_epochs},
        "rqvae": {"epochs": args.tokenizer_epochs},
    }
    rows = {}
    for name in MODELS:
        _, model, batch = build(name, args.dataset, base)
        single, full = measure(model, batch, args.users, args.repeats, args.device)
        rows[name] = (median(single), float(np.percentile(single, 90)), median(full), len(batch))
    print(f"\nbeam inference, {args.dataset}, beam {model.beam_size}, {device_name(args.device)}")
    print(
        f"{'model':<8} {'1 user ms (median)':>19} {'p90 ms':>8} "
        f"{f'{rows[name][3]} users ms':>15} {'users/s':>9}"
    )
    for name, (one, p90, full, n) in rows.items():
        print(f"{name:<8} {one * 1e3:>19.1f} {p90 * 1e3:>8.1f} {full * 1e3:>15.1f} {n / full:>9.0f}")
    tiger, bbq = rows["TIGER"], rows["BBQRec"]
    print(
        f"{'BBQRec/TIGER':<8} {bbq[0] / tiger[0]:>19.2f} {bbq[1] / tiger[1]:>8.2f} {bbq[2] / tiger[2]:>15.2f}"
    )


if __name__ == "__main__":
    main()
