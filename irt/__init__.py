"""IRT item banks for cheap evaluation: calibrate, select anchors, estimate accuracy.

tinyBenchmarks (Polo et al. 2024), metabench (Kipnis et al. 2024), MERGE³ (Mencattini et
al. 2025) and AIPW (Zhang et al. 2025). See docs/irt.md. Estimators, anchor selectors and
calibration engines are registries (ESTIMATORS, SELECTORS, ENGINES): docs/extending.md.
Adaptive testing on a shared core (Fluid Benchmarking, Hofmann et al. 2025): AdaptiveTest.
"""

from __future__ import annotations

from irt.ability import fit_abilities, fit_merge_weights
from irt.adaptive import AdaptiveTest
from irt.anchors import (
    DEFAULT_SELECTOR,
    SELECTORS,
    AnchorSelector,
    AnchorSet,
    extend_anchors,
    load_anchors,
    select_anchors,
    union_anchors,
)
from irt.bank import BANK_FORMAT, ItemBank, load_bank, save_bank
from irt.calibrate import (
    DEFAULT_ENGINE,
    DIM_CANDIDATES,
    ENGINES,
    CalibrationEngine,
    calibrate,
    recalibrate,
)
from irt.errors import IRTError, ItemBankError, ResponseFileError, UnknownIRTNameError
from irt.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    AnchorEstimator,
    Estimate,
    Estimator,
    estimate_accuracy,
)
from irt.flags import MIN_SPREAD, ItemFlags, flag_items
from irt.lm_eval_logs import ShrunkRunWarning
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
    "AdaptiveTest",
    "AnchorEstimator",
    "AnchorSelector",
    "AnchorSet",
    "BANK_FORMAT",
    "CalibrationEngine",
    "DEFAULT_ENGINE",
    "DEFAULT_ESTIMATOR",
    "DEFAULT_SELECTOR",
    "DIM_CANDIDATES",
    "ENGINES",
    "ESTIMATORS",
    "Estimate",
    "Estimator",
    "IRTError",
    "ItemBank",
    "ItemBankError",
    "ItemFlags",
    "MIN_SPREAD",
    "ItemParams",
    "ResponseFileError",
    "ResponseMatrix",
    "SELECTORS",
    "ShrunkRunWarning",
    "UnknownIRTNameError",
    "ValidationConfig",
    "binarize_mean_preserving",
    "calibrate",
    "estimate_accuracy",
    "fit_abilities",
    "fit_merge_weights",
    "flag_items",
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
    "union_anchors",
    "validate",
    "write_report",
]
