"""Encode every item's image of a RecBole dataset into ``<NAME>.image.npz`` with open_clip.

This is ``dataset_scripts/encode_images.py``'s command. Images are found and encoded by
:func:`recbole_bbq.data.image_encoder.encode_dataset_images`; ``--pretrained none`` gives
random weights, for tests only.
"""

from recbole_bbq.converters.cli import add_option, encoder_parser, run_encoder
from recbole_bbq.data.image_encoder import encode_dataset_images


def build_parser():
    """The command line: the shared encoder options plus the image folder, the model and its weights."""
    parser = encoder_parser(__doc__, batch_size=32, missing_help="absent/unreadable image policy")
    add_option(parser, "image_dir", required=True, help="folder of <item_id>.<jpg|jpeg|png> images")
    arch_help = "open_clip architecture, e.g. ViT-B-32, or local-dir:<folder>"
    add_option(parser, "model", dest="arch", metavar="MODEL", required=True, help=arch_help)
    weights_help = "local checkpoint file, or 'none' for random weights"
    add_option(parser, "pretrained", required=True, help=weights_help)
    add_option(parser, "seed", type=int, default=2020, help="seed of random weights (default: 2020)")
    return parser


def main(argv=None):
    """Encode the images; returns the exit status (2 after ``error: <message>`` on a user error)."""
    return run_encoder(build_parser(), encode_dataset_images, argv)
