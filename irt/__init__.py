"""IRT item banks for cheap evaluation: calibrate, select anchors, estimate accuracy.

tinyBenchmarks (Polo et al. 2024), metabench (Kipnis et al. 2024), MERGE³ (Mencattini et
al. 2025) and AIPW (Zhang et al. 2025). See docs/irt.md.
"""

from __future__ import annotations

from irt.ability import fit_abilities, fit_merge_weights
from irt.anchors import SELECTORS, AnchorSet, extend_anchors, load_anchors, select_anchors
from irt.bank import BANK_FORMAT, ItemBank, load_bank, save_bank
from irt.calibrate import DIM_CANDIDATES, ENGINES, calibrate, recalibrate
from irt.errors import IRTError, ItemBankError, ResponseFileError
from irt.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    AnchorEstimator,
    Estimate,
    estimate_accuracy,
)
from irt.loaders import (
    load_lm_eval_samples,
    load_long_table,
    load_merge3_eval_logs,
    load_responses,
)
from irt.params import ItemParams
from irt.report import write_report
from irt.responses import ResponseMatrix, binarize_mean_preserving
from irt.validate import ValidationConfig, validate

__all__ = [
    "AnchorEstimator",
    "AnchorSet",
    "BANK_FORMAT",
    "DEFAULT_ESTIMATOR",
    "DIM_CANDIDATES",
    "ENGINES",
    "ESTIMATORS",
    "Estimate",
    "IRTError",
    "ItemBank",
    "ItemBankError",
    "ItemParams",
    "ResponseFileError",
    "ResponseMatrix",
    "SELECTORS",
    "ValidationConfig",
    "binarize_mean_preserving",
    "calibrate",
    "estimate_accuracy",
    "fit_abilities",
    "fit_merge_weights",
    "extend_anchors",
    "load_anchors",
    "load_bank",
    "load_lm_eval_samples",
    "load_long_table",
    "load_merge3_eval_logs",
    "load_responses",
    "recalibrate",
    "save_bank",
    "select_anchors",
    "validate",
    "write_report",
]
