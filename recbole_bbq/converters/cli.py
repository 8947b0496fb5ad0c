"""Command lines of the converters and encoders: option spellings, shared options, exit status.

Options are spelled with underscores (``--output_dir``), as RecBole's and ``run_recbole_bbq.py``'s
are; the hyphen spelling (``--output-dir``) stays an alias so that older commands keep working.
A user error is printed as ``error: <message>`` with exit status 2
(:func:`recbole_bbq.errors.exit_status`).
"""

import argparse
import functools
import os

from recbole_bbq.converters.common import DEFAULT_MAX_HISTORY, format_stats
from recbole_bbq.data.encoding import run_encoder_cli
from recbole_bbq.data.features import MISSING_POLICIES
from recbole_bbq.errors import exit_status


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose abbreviations ignore spelling aliases.

    ``--output`` matches both ``--output_dir`` and its alias ``--output-dir``; they are one
    option, so the abbreviation is not ambiguous (it was accepted before the alias existed).
    """

    def _get_option_tuples(self, option_string):
        matches = super()._get_option_tuples(option_string)
        return list({id(match[0]): match for match in matches}.values())


def add_option(parser, name, **kwargs):
    """Add ``--<name>`` and, for a name with underscores, its hyphen alias.

    Args:
        parser (argparse.ArgumentParser): The parser.
        name (str): Option name in underscore spelling, e.g. ``output_dir``; it is also the
            attribute name unless ``dest`` is given.
        **kwargs: Keywords of :meth:`argparse.ArgumentParser.add_argument`.

    Returns:
        argparse.Action: The added option.
    """
    flags = [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    return parser.add_argument(*flags, **kwargs)


def _description(doc):
    """The first line of a module docstring: the ``--help`` description."""
    return doc.splitlines()[0]


# --------------------------------------------------------------------------- converters


def converter_parser(doc):
    """Parser with the options every converter shares.

    Args:
        doc (str): The converter module's docstring; its first line describes the command.

    Returns:
        CommandParser: ``--input``, ``--name``, ``--output_dir`` and ``--max_history``.
    """
    parser = CommandParser(description=_description(doc))
    add_option(parser, "input", required=True, help="source folder (or file, where noted)")
    add_option(parser, "name", required=True, help="dataset name of the output")
    add_option(parser, "output_dir", default="dataset", help="parent folder of the output (default: dataset)")
    add_option(
        parser,
        "max_history",
        type=int,
        default=DEFAULT_MAX_HISTORY,
        help=f"longest history kept / MAX_ITEM_LIST_LENGTH (default: {DEFAULT_MAX_HISTORY})",
    )
    return parser


def run_converter(parser, convert, argv=None):
    """Parse ``argv``, run ``convert`` with the options and print its statistics.

    Args:
        parser (argparse.ArgumentParser): From :func:`converter_parser` plus the converter's options.
        convert (Callable[..., dict]): Takes every option as a keyword; returns the statistics.
        argv (list[str], optional): Arguments; the process's command line when None.

    Returns:
        int: 0 on success, 2 on bad usage (argparse exits) or a data error (``error: <message>``).
    """
    options = vars(parser.parse_args(argv))
    if options["max_history"] < 1:
        parser.error("--max_history must be at least 1")
    if not options["name"] or os.path.basename(options["name"]) != options["name"]:
        parser.error(f"--name must be a plain folder name, got '{options['name']}'")
    return exit_status(_convert_and_report, convert, options)


def _convert_and_report(convert, options):
    stats = convert(**options)
    print(format_stats(options["name"], stats))
    print(f"written to {os.path.join(options['output_dir'], options['name'])}")


# --------------------------------------------------------------------------- encoders


def encoder_parser(doc, batch_size, missing_help):
    """Parser with the options both item encoders share.

    Attribute names are the keywords of the encoder functions (``--missing`` is
    ``missing_policy``), so that :func:`run_encoder` passes the options on as they are.

    Args:
        doc (str): The encoder command's docstring; its first line describes the command.
        batch_size (int): Default of ``--batch_size``.
        missing_help (str): Help of ``--missing``.

    Returns:
        CommandParser: ``--dataset``, ``--data_path``, ``--batch_size``, ``--device`` and ``--missing``.
    """
    parser = CommandParser(description=_description(doc))
    add_option(parser, "dataset", required=True, help="dataset name, e.g. ml-100k")
    add_option(parser, "data_path", default="dataset", help="folder that holds <NAME>/ (default: dataset)")
    add_option(parser, "batch_size", type=int, default=batch_size)
    add_option(parser, "device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    add_option(
        parser, "missing", dest="missing_policy", choices=MISSING_POLICIES, default="zero", help=missing_help
    )
    return parser


def run_encoder(parser, encode_dataset, argv=None):
    """Run an encoder command: parse ``argv``, encode the dataset and print the feature file path.

    Args:
        parser (argparse.ArgumentParser): From :func:`encoder_parser` plus the encoder's options.
        encode_dataset (Callable[..., str]): Takes the dataset folder and every option but
            ``data_path`` as keywords; returns the feature file path.
        argv (list[str], optional): Arguments; the process's command line when None.

    Returns:
        int: The exit status (see :func:`recbole_bbq.data.encoding.run_encoder_cli`).
    """
    return run_encoder_cli(functools.partial(_encode_and_print, parser, encode_dataset), argv)


def _encode_and_print(parser, encode_dataset, argv):
    options = vars(parser.parse_args(argv))
    data_dir = os.path.join(options.pop("data_path"), options["dataset"])
    print(encode_dataset(data_dir, **options))
