"""Training throughput of the generative models: padding-aware batches and bf16 against the full
``history_length x (L+1)``-token encoder in fp32, on the same data in one run.

For each model and size it trains ``--epochs`` epochs per variant from the same initial weights
and prints training sequences per second, seconds per epoch (median over epochs) and the valid
NDCG@10 after the last epoch (validated once, at the end). Sizes in ``--timing-only`` (default:
``tiger``, where an fp32 epoch takes minutes on 2 cores) are timed over the first
``--timing-batches`` batches of an epoch instead, extrapolated to the epoch, with no accuracy:

* ``before``: every batch padded to ``history_length`` items, shuffled rows, fp32;
* ``cut+bucketed``: each batch cut to its longest real history, length-bucketed shuffling;
* ``cut+bucketed+bf16``: the same under bf16 autocast.

Speed-ups are ratios against ``before`` measured in the same run (this machine is noisy).

Usage: python benchmarks/train_throughput.py [--models TIGER,BBQRec] [--sizes cpu_small,tiger]
           [--epochs 3] [--timing-only tiger] [--timing-batches 15] [--data-path dataset]
           [--device cpu] [--compile] [--variants before,cut+bucketed] [--seed 2020]
"""

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recbole_bbq.compat  # noqa: E402,F401  (before recbole)

from recbole.utils import init_seed  # noqa: E402

from recbole_bbq.config import Config  # noqa: E402
from recbole_bbq.pipeline import prepare_semantic_ids  # noqa: E402
from recbole_bbq.utils import create_dataset, data_preparation, get_model, get_trainer  # noqa: E402

from _bench import REPO, device_name, ensure_dataset, median  # noqa: E402

CONFIGS = os.path.join(REPO, "benchmarks", "configs")
# Size -> config files on top of scientific.yaml (tiger: the model YAML's own TIGER sizes).
SIZES = {"cpu_small": [os.path.join(CONFIGS, "cpu_small.yaml")], "tiger": []}
VARIANTS = {
    "before": {"trim_padding": False, "length_bucketing": False, "mixed_precision": None},
    "cut+bucketed": {"trim_padding": True, "length_bucketing": True, "mixed_precision": None},
    "cut+bucketed+bf16": {"trim_padding": True, "length_bucketing": True, "mixed_precision": "bf16"},
}
COMPILED = {"cut+bucketed+compile": {**VARIANTS["cut+bucketed"], "torch_compile": True}}


def build(model_name, size, variant, epochs, base):
    """Config, train/valid loaders and a trainer of one variant (same initial weights for all)."""
    files = [os.path.join(CONFIGS, "scientific.yaml")] + SIZES[size]
    overrides = {**base, **variant, "epochs": epochs, "eval_step": epochs, "max_train_seconds": None}
    overrides.update(
        prepare_semantic_ids(model_name, "Scientific", files, config_dict=overrides, show_progress=False)
    )
    config = Config(model_name, "Scientific", config_file_list=files, config_dict=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    return train_data, valid_data, get_trainer(config["MODEL_TYPE"], model_name)(config, model)


def measure(model_name, size, variant, epochs, base):
    """Train ``epochs`` epochs; return (sequences per second, median epoch seconds, valid NDCG@10
    after the last epoch)."""
    train_data, valid_data, trainer = build(model_name, size, variant, epochs, base)
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
    epoch_seconds = median(seconds)
    return (
        len(train_data._dataset) / epoch_seconds,
        epoch_seconds,
        trainer.valid_curve[-1]["valid_result"]["ndcg@10"],
    )


class FirstBatches:
    """The first ``n`` batches of a training loader, as one short epoch."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self):
        return self.n


def measure_timing_only(model_name, size, variant, batches, base):
    """Time the first ``batches`` batches of an epoch; return (sequences per second, the epoch
    seconds that rate implies, None)."""
    train_data, _, trainer = build(model_name, size, variant, 1, base)
    trainer._build_lr_scheduler(len(train_data))
    rows = []
    loss = trainer.model.calculate_loss
    trainer.model.calculate_loss = lambda batch: rows.append(len(batch)) or loss(batch)
    start = time.perf_counter()
    trainer._train_epoch(FirstBatches(train_data, batches), 0)
    rate = sum(rows) / (time.perf_counter() - start)
    return rate, len(train_data._dataset) / rate, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="TIGER,BBQRec")
    parser.add_argument("--sizes", default="cpu_small,tiger")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (valid NDCG@10 after them)")
    parser.add_argument(
        "--timing-only", default="tiger", help="sizes timed over a few batches, without accuracy"
    )
    parser.add_argument("--timing-batches", type=int, default=15)
    parser.add_argument("--data-path", default=os.path.join(REPO, "dataset"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--compile", action="store_true", help="also time torch.compile (compilation included)"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated; the first is the reference"
    )
    parser.add_argument("--seed", type=int, default=2020, help="seed of data order and initial weights")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line too
    known = {**VARIANTS, **COMPILED}
    variants = {name: known[name] for name in args.variants.split(",")}
    if args.compile:
        variants.update(COMPILED)

    ensure_dataset("Scientific", args.data_path)
    base = {"data_path": args.data_path, "show_progress": False, "state": "ERROR", "seed": args.seed}
    base.update(
        use_gpu=args.device != "cpu", checkpoint_dir=os.path.join(args.data_path, "..", "saved", "throughput")
    )
    print(f"Scientific-MM training throughput on {device_name(args.device)}, seed {args.seed}")
    print("| model | size | variant | trained | seqs/s | s/epoch | speed-up | valid NDCG@10 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for model_name in args.models.split(","):
        for size in args.sizes.split(","):
            timing_only = size in args.timing_only.split(",")
            reference = None
            for variant in variants:
                if timing_only:
                    rate, seconds, ndcg = measure_timing_only(
                        model_name, size, variants[variant], args.timing_batches, base
                    )
                else:
                    rate, seconds, ndcg = measure(model_name, size, variants[variant], args.epochs, base)
                reference = reference or rate
                trained = f"{args.timing_batches} batches" if timing_only else str(args.epochs)
                shown = "–" if ndcg is None else f"{ndcg:.4f}"
                print(
                    f"| {model_name} | {size} | {variant} | {trained} | {rate:,.0f} | {seconds:.1f} | "
                    f"{rate / reference:.2f}x | {shown} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
