"""DIPHA: its binary file formats (`formats`), the handoff to a DIPHA binary and the
import/export of epochs (`backend`), and the `dnntopo-dipha` drop-in (`cli`).

The format functions are re-exported here: `from dnntopo import dipha; dipha.read_diagram(...)`.
"""
from dnntopo.dipha.formats import (  # noqa: F401
    DIAGRAM, FULL, MAGIC, MAGIC_BYTES, NAMES, PAIR, SPARSE, DiphaFormatError, edges_from_file,
    exact_values, file_size_ok, from_dipha, header, read_diagram, read_full, read_sparse,
    sort_pairs, symmetric_lists, to_dipha, write_diagram, write_full, write_sparse)
