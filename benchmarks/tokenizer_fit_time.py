"""Fit time of the BBQ tokenizer: Scientific-MM (real text/image vectors) and an Instruments-sized
catalogue (6,250 items, random vectors of the same shapes as MQL4GRec's inputs).

Usage: python benchmarks/tokenizer_fit_time.py [--epochs 100] [--device cpu]
Behaviour vectors are random here: fit time does not depend on their values.
"""

import argparse
import os
import time

import recbole_bbq.compat  # noqa: F401  (before recbole)

import numpy as np

from recbole_bbq.tokenizer.tokenizer import BBQTokenizer

SCIENTIFIC = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon_scientific_mm")


def scientific_inputs():
    def read(suffix):
        return np.fromfile(os.path.join(SCIENTIFIC, f"Scientific.{suffix}"), np.float32).reshape(-1, 512)

    features = {"text": read("feat1CLS"), "image": read("feat3CLS")}
    return features, np.random.default_rng(0).normal(size=(1585, 64)).astype(np.float32)


def instruments_sized_inputs(n=6250):
    rng = np.random.default_rng(1)
    features = {"text": rng.normal(size=(n, 768)), "image": rng.normal(size=(n, 768))}
    return {m: x.astype(np.float32) for m, x in features.items()}, rng.normal(size=(n, 64)).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    for name, (features, behaviour) in (
        ("Scientific-MM (real vectors)", scientific_inputs()),
        ("Instruments-sized (random)", instruments_sized_inputs()),
    ):
        start = time.time()
        tokenizer = BBQTokenizer(epochs=args.epochs).fit(
            features, behaviour, device=args.device, show_progress=False
        )
        total = time.time() - start
        stats = tokenizer.statistics(features, behaviour)
        rows.append((name, len(behaviour), args.epochs, total, total / args.epochs, stats["collision_rate"]))
    print(f"device: {args.device}")
    print(f"{'catalogue':<30} {'items':>6} {'epochs':>6} {'fit s':>7} {'s/epoch':>8} {'collisions':>10}")
    for name, items, epochs, total, per_epoch, collisions in rows:
        print(f"{name:<30} {items:>6} {epochs:>6} {total:>7.1f} {per_epoch:>8.3f} {collisions:>10.4f}")


if __name__ == "__main__":
    main()
