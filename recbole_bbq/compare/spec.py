"""What one comparison is: its command line, its rows and seeds, and one (row, seed) cell."""

import shlex
from dataclasses import dataclass, field

# Command-line options that select cells or shape the report rather than configure the cells.
SELECTION_OPTIONS = ("model", "dataset", "seeds", "results_dir", "report_only", "compare_reference")


@dataclass(frozen=True)
class CommandLine:
    """The command line that started a comparison, program name first (a process's argument vector).

    The caller passes it in (the package never reads the process's own): its ``--key=value``
    options are stored with every cell, the whole line in ``protocol.json``.
    """

    argv: tuple[str, ...] = ()

    @classmethod
    def of(cls, argv):
        """The :class:`CommandLine` of ``argv`` (program name first; None: an empty line)."""
        return cls(tuple(argv or ()))

    @property
    def text(self):
        """The line as a shell would take it back (``shlex.join``)."""
        return shlex.join(self.argv)

    def value(self, key):
        """The value of the last ``--key=value`` option on the line; None when absent."""
        prefix = f"--{key}="
        values = [arg[len(prefix) :] for arg in self.argv[1:] if arg.startswith(prefix)]
        return values[-1] if values else None

    def overrides(self):
        """The ``--key=value`` options that configure the cells (not those that select them)."""
        return [
            arg
            for arg in self.argv[1:]
            if arg.startswith("--") and arg[2:].split("=", 1)[0] not in SELECTION_OPTIONS
        ]


@dataclass(frozen=True)
class Comparison:
    """Every row (a model name or a ``compare_variants`` label) x seed on one dataset.

    Attributes:
        models (list[str]): Row labels, in table order.
        dataset (str): Dataset name.
        seeds (list[int]): Seeds, shared by every row.
        config_file_list (list[str] | None): YAML files shared by every cell.
        config_dict (dict): Overrides shared by every cell (``compare_variants`` included).
        out_dir (str): ``<results_dir>/<dataset>``: the report and ``runs/``.
        command (CommandLine): The command line that started the comparison.
        reference (str | None): ``compare_reference``: the row every other row is tested
            against over users (a column of the table); None: no such column.
    """

    models: list
    dataset: str
    seeds: list
    config_file_list: list | None = None
    config_dict: dict = field(default_factory=dict)
    out_dir: str = ""
    command: CommandLine = CommandLine()
    reference: str | None = None


@dataclass(frozen=True)
class Cell:
    """One (row, seed) of a comparison.

    Attributes:
        label (str): The row: a model name or a ``compare_variants`` label.
        model (str): The model class the row trains.
        seed (int): The cell's seed.
        config_dict (dict): The cell's overrides: the shared ones, then the variant's.
        weights_of (str | None): The row whose trained weights this cell evaluates (no training).
    """

    label: str
    model: str
    seed: int
    config_dict: dict
    weights_of: str | None = None
