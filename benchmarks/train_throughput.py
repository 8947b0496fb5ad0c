"""Training throughput of the generative models: padding-aware batches and bf16 against the full
``history_length x (L+1)``-token encoder in fp32, on the same data in one run.

For each model and size it trains ``--epochs`` epochs per variant from the same initial weights
and prints training sequences per second, seconds per epoch (median over epochs) and the valid
NDCG@10 after the last epoch (validated once, at the end):

* ``before``: every batch padded to ``history_length`` items, shuffled rows, fp32;
* ``cut+bucketed``: each batch cut to its longest real history, length-bucketed shuffling;
* ``cut+bucketed+bf16``: the same under bf16 autocast.

Speed-ups are ratios against ``before`` measured in the same run (this machine is noisy).

Usage: python benchmarks/train_throughput.py [--models TIGER,BBQRec] [--sizes cpu_small,tiger]
           [--epochs 3] [--size-epochs tiger=1] [--data-path dataset] [--device cpu]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench import REPO, device_name, ensure_dataset, median  # noqa: E402

import recbole_bbq  # noqa: E402,F401  (compat first)
from recbole.utils import init_seed  # noqa: E402

from recbole_bbq.config import Config  # noqa: E402
from recbole_bbq.pipeline import prepare_semantic_ids  # noqa: E402
from recbole_bbq.utils import create_dataset, data_preparation, get_model, get_trainer  # noqa: E402

CONFIGS = os.path.join(REPO, "benchmarks", "configs")
# Size -> config files on top of scientific.yaml (tiger: the model YAML's own TIGER sizes).
SIZES = {"cpu_small": [os.path.join(CONFIGS, "cpu_small.yaml")], "tiger": []}
VARIANTS = {
    "before": {"trim_padding": False, "length_bucketing": False, "mixed_precision": None},
    "cut+bucketed": {"trim_padding": True, "length_bucketing": True, "mixed_precision": None},
    "cut+bucketed+bf16": {"trim_padding": True, "length_bucketing": True, "mixed_precision": "bf16"},
}
COMPILED = {"cut+bucketed+compile": {**VARIANTS["cut+bucketed"], "torch_compile": True}}


def measure(model_name, size, variant, epochs, base):
    """Train ``epochs`` epochs with the ``variant`` keys; return (rows per epoch, median epoch
    seconds, valid NDCG@10 after the last epoch)."""
    files = [os.path.join(CONFIGS, "scientific.yaml")] + SIZES[size]
    overrides = {**base, **variant, "epochs": epochs, "eval_step": epochs, "max_train_seconds": None}
    overrides.update(prepare_semantic_ids(model_name, "Scientific", files, config_dict=overrides, show_progress=False))
    config = Config(model_name, "Scientific", config_file_list=files, config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])  # same initial weights for every variant
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    seconds = []
    train_epoch = trainer._train_epoch

    def timed_epoch(*args, **kwargs):
        start = time.perf_counter()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    trainer._train_epoch = timed_epoch
    trainer.fit(train_data, valid_data, saved=False, show_progress=False, verbose=False)
    return len(train_data._dataset), median(seconds), trainer.valid_curve[-1]["valid_result"]["ndcg@10"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="TIGER,BBQRec")
    parser.add_argument("--sizes", default="cpu_small,tiger")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (valid NDCG@10 after them)")
    parser.add_argument("--size-epochs", default="tiger=1", help="per-size epochs, e.g. tiger=1")
    parser.add_argument("--data-path", default=os.path.join(REPO, "dataset"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compilation included)")
    args = parser.parse_args()
    variants = {**VARIANTS, **(COMPILED if args.compile else {})}

    ensure_dataset("Scientific", args.data_path)
    size_epochs = dict(item.split("=") for item in args.size_epochs.split(",") if item)
    base = {"data_path": args.data_path, "show_progress": False, "state": "ERROR", "seed": 2020}
    base.update(use_gpu=args.device != "cpu", checkpoint_dir=os.path.join(args.data_path, "..", "saved", "throughput"))
    print(f"Scientific-MM training throughput on {device_name(args.device)}")
    print("| model | size | variant | epochs | seqs/s | s/epoch | speed-up | valid NDCG@10 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model_name in args.models.split(","):
        for size in args.sizes.split(","):
            epochs = int(size_epochs.get(size, args.epochs))
            reference = None
            for variant in variants:
                rows, seconds, ndcg = measure(model_name, size, variants[variant], epochs, base)
                reference = reference or seconds
                print(
                    f"| {model_name} | {size} | {variant} | {epochs} | {rows / seconds:,.0f} | {seconds:.1f} | "
                    f"{reference / seconds:.2f}x | {ndcg:.4f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
