"""Encode every item's image of a RecBole dataset into ``<NAME>.image.npz`` with open_clip.

Example::

    python dataset_scripts/encode_images.py --dataset ml-100k --image-dir posters_w92 \\
        --model ViT-B-32 --pretrained /models/open_clip_vit_b_32.bin

An item's image is the ``image`` column of ``<NAME>.item`` when that is an existing path
(absolute, or relative to ``--image-dir`` or the dataset folder), else
``<image-dir>/<item_id>.<jpg|jpeg|png>``. ``--pretrained none`` uses random weights (tests only).
Writes ``<data-path>/<NAME>/<NAME>.image.npz`` and records the ``image`` modality in
``<NAME>.yaml``; a second run over unchanged files with the same ``--missing`` policy is a no-op
("cached"). Errors print ``error: ...`` and exit with status 2.
"""

import argparse
import os
import sys

import recbole_bbq  # noqa: F401  (compatibility fixes first, before torchvision/open_clip)
from recbole_bbq.data.features import MISSING_POLICIES
from recbole_bbq.data.image_encoder import encode_dataset_images
from recbole_bbq.data.encoding import run_encoder_cli


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset name, e.g. ml-100k")
    parser.add_argument("--image-dir", required=True, help="folder of <item_id>.<jpg|jpeg|png> images")
    parser.add_argument(
        "--model", required=True, help="open_clip architecture, e.g. ViT-B-32, or local-dir:<folder>"
    )
    parser.add_argument(
        "--pretrained", required=True, help="local checkpoint file, or 'none' for random weights"
    )
    parser.add_argument("--data-path", default="dataset", help="folder that holds <NAME>/ (default: dataset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument(
        "--missing", choices=MISSING_POLICIES, default="zero", help="absent/unreadable image policy"
    )
    parser.add_argument("--seed", type=int, default=2020, help="seed of random weights (default: 2020)")
    return parser.parse_args(argv)


def main(argv=None):
    """Encode the dataset's images; return the feature file path."""
    args = parse_args(argv)
    return encode_dataset_images(
        os.path.join(args.data_path, args.dataset),
        args.dataset,
        args.image_dir,
        args.model,
        args.pretrained,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        missing_policy=args.missing,
    )


if __name__ == "__main__":
    sys.exit(run_encoder_cli(main))
