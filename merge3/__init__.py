"""merge3: model merging (task arithmetic, TIES, DARE, TSV, Iso, C2M3, MASS) and
a MERGE3-style evolutionary merge search with IRT fitness."""

from __future__ import annotations

__version__ = "0.1.0"
