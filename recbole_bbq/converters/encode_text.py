"""Encode every item's text of a RecBole dataset into ``<NAME>.text.npz`` (all-MiniLM-L6-v2).

The command of ``dataset_scripts/encode_text.py``; the encoder is
:func:`recbole_bbq.data.text_encoder.encode_dataset_text`.
"""

from recbole_bbq.converters.cli import add_option, encoder_parser, run_encoder
from recbole_bbq.data.text_encoder import encode_dataset_text

MISSING_HELP = "item without text: zero = zero vector flagged missing (default), error = stop"


def build_parser():
    """The command line: the shared encoder options plus the model, fp16 and the text length."""
    parser = encoder_parser(__doc__, batch_size=64, missing_help=MISSING_HELP)
    model_help = "local Hugging Face model directory (default: all-MiniLM-L6-v2)"
    add_option(parser, "model", dest="model_path", metavar="MODEL", default=None, help=model_help)
    add_option(parser, "fp16", action="store_true", help="half precision (GPU only)")
    add_option(parser, "max_length", type=int, default=128, help="tokens per text (default: 128)")
    return parser


def main(argv=None):
    """Encode the texts; returns the exit status (2 after ``error: <message>`` on a user error)."""
    return run_encoder(build_parser(), encode_dataset_text, argv)
