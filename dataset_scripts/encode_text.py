"""Encode every item's text of a RecBole dataset into ``<NAME>.text.npz`` (all-MiniLM-L6-v2).

Example::

    python dataset_scripts/encode_text.py --dataset ml-100k --data-path dataset --device cpu

Writes ``<data-path>/<NAME>/<NAME>.text.npz`` and records the ``text`` modality and its
dimension in ``<data-path>/<NAME>/<NAME>.yaml``; a second run with the same model and texts is
a no-op ("cached"). An item with an empty text gets a zero row flagged missing (``--missing zero``,
the default) or stops the run (``--missing error``). Errors print ``error: ...`` and exit with
status 2.
"""

import sys

from recbole_bbq.converters.encode_text import main

if __name__ == "__main__":
    sys.exit(main())
