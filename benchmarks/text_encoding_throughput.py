"""Text encoding throughput: all-MiniLM-L6-v2 over the 4,344 Amazon Scientific item texts.

Each item's text is ``title. brand. categories. description`` (LC-Rec JSON), truncated by the
tokenizer to ``--max-length`` tokens. Prints one table row per batch size::

    python benchmarks/text_encoding_throughput.py --device cpu --batch-sizes 32 64 128
"""

import argparse
import json
import os
import time

import recbole_bbq.compat  # noqa: F401  (before recbole)

from recbole_bbq.data.text_encoder import encode_texts

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ITEMS = os.path.join(
    REPO_DIR, "..", "shared", "data", "amazon_scientific_lcrec", "Scientific.item.json"
)
TEXT_FIELDS = ("title", "brand", "categories", "description")


def load_texts(path):
    """``title. brand. categories. description`` of every item, in item-id order."""
    with open(path, encoding="utf-8") as f:
        items = json.load(f)
    parts = ([item.get(name, "").strip().rstrip(".") for name in TEXT_FIELDS] for item in items.values())
    return [". ".join(part for part in item if part) for item in parts]


def main():
    """Encode the texts once per batch size and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default=DEFAULT_ITEMS, help="LC-Rec <name>.item.json file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--fp16", action="store_true")
    args = parser.parse_args()

    texts = load_texts(args.items)
    print(f"{'items':>6} {'batch':>6} {'seconds':>8} {'items/s':>8}")
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        encode_texts(
            texts,
            batch_size=batch_size,
            device=args.device,
            fp16=args.fp16,
            max_length=args.max_length,
            show_progress=False,
        )
        seconds = time.perf_counter() - start
        print(f"{len(texts):>6} {batch_size:>6} {seconds:>8.1f} {len(texts) / seconds:>8.1f}")


if __name__ == "__main__":
    main()
