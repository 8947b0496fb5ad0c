"""Convert an LC-Rec / MQL4GRec JSON dataset into a recbole_bbq dataset.

Input folder (``<P>`` = source prefix, e.g. ``Scientific``):

* ``<P>.inter.json``: ``{user: [item, ...]}`` in chronological order.
* ``<P>.item.json`` (optional): ``{item: {title, description, brand, categories}}``.
* ``<P>.item2id`` (optional): ``ASIN<TAB>item`` -> an ``asin`` column in ``NAME.item``.
* ``<P>.index.json`` / ``<P>.index_<x>.json`` anywhere below the folder (optional):
  ``{item: ["<a_12>", ...]}`` published semantic IDs, each written as ``NAME.<id>.sid.npz``
  (``<id>`` = ``index``, ``index_<x>``, or the folder name for ``<method>/<P>.index.json``).

``--code-features index_lemb=text,index_vitemb=image`` also writes each listed semantic-ID file
as a *code-derived* modality: the one-hot encoding of the item's code tuple (L levels x K codes,
e.g. 4 x 256 = 1,024-d for MQL4GRec Instruments). Use it where the published codes are the only
signal and the raw vectors are not available; the vectors carry no more than the codes do.

Output: ``NAME.inter`` whose timestamp is the position in the user's list (so RecBole's
leave-one-out split by time gives LC-Rec's last = test, second last = valid), ``NAME.item``,
``NAME.yaml`` and the semantic-ID files.

Example:
    python dataset_scripts/lcrec.py --input ../shared/data/amazon_scientific_lcrec --name Scientific
    python dataset_scripts/lcrec.py --input ../shared/data/amazon_instruments_mql4grec --name Instruments \
        --code-features index_lemb=text,index_vitemb=image
"""

import sys

from recbole_bbq.converters.lcrec import main

if __name__ == "__main__":
    sys.exit(main())
