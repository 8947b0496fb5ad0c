"""Convert a UniSRec / MISSRec benchmark folder into a recbole_bbq dataset.

Input folder (``<P>`` = source prefix, e.g. ``Scientific``):

* ``<P>.train.inter``, ``<P>.valid.inter``, ``<P>.test.inter``: ``user_id item_id_list item_id``
  with integer indices.
* ``<P>.item2index`` / ``<P>.user2index``: ``ASIN idx`` / ``reviewerID idx``.
* ``<P>.text`` (optional): ``item_id:token<TAB>text:token_seq`` keyed by ASIN.
* ``<P>.feat1CLS`` / ``<P>.feat3CLS`` (optional): raw float32 text / image features, row = item idx.

Output: pre-split benchmark files keyed by ASIN and reviewerID, ``NAME.item``, ``NAME.yaml`` and
``NAME.text.npz`` / ``NAME.image.npz`` feature files.

Example:
    python dataset_scripts/unisrec.py --input ../shared/data/amazon_scientific_mm --name Scientific
"""

import sys

from recbole_bbq.converters.unisrec import main

if __name__ == "__main__":
    sys.exit(main())
