"""Encode every item's text of a RecBole dataset into ``<NAME>.text.npz`` (all-MiniLM-L6-v2).

Example::

    python dataset_scripts/encode_text.py --dataset ml-100k --data-path dataset --device cpu

Writes ``<data-path>/<NAME>/<NAME>.text.npz`` and records the ``text`` modality and its
dimension in ``<data-path>/<NAME>/<NAME>.yaml``; a second run with the same model and texts is
a no-op ("cached"). An item with an empty text gets a zero row flagged missing (``--missing zero``,
the default) or stops the run (``--missing error``). Errors print ``error: ...`` and exit with
status 2.
"""

import argparse
import os
import sys

import recbole_bbq  # noqa: F401  (compatibility fixes first)
from recbole_bbq.data.encoding import run_encoder_cli
from recbole_bbq.data.features import MISSING_POLICIES
from recbole_bbq.data.text_encoder import encode_dataset_text


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. ml-100k")
    parser.add_argument("--data-path", default="dataset", help="folder that holds <NAME>/ (default: dataset)")
    parser.add_argument(
        "--model", default=None, help="local Hugging Face model directory (default: all-MiniLM-L6-v2)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    parser.add_argument("--fp16", action="store_true", help="half precision (GPU only)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text (default: 128)")
    parser.add_argument(
        "--missing",
        choices=MISSING_POLICIES,
        default="zero",
        help="item without text: zero = zero vector flagged missing (default), error = stop",
    )
    return parser.parse_args(argv)


def main(argv=None):
    """Encode the dataset's texts; return the feature file path."""
    args = parse_args(argv)
    return encode_dataset_text(
        os.path.join(args.data_path, args.dataset),
        args.dataset,
        model_path=args.model,
        batch_size=args.batch_size,
        device=args.device,
        fp16=args.fp16,
        max_length=args.max_length,
        missing_policy=args.missing,
    )


if __name__ == "__main__":
    sys.exit(run_encoder_cli(main))
