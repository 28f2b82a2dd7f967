"""Item bank: calibrated item parameters, the population's abilities and responses.

A directory that loads back bit-identically (``params.npz`` holds every array, ``bank.json``
the ids and metadata; ``items.csv`` and ``models.csv`` are for humans). The population's
responses travel with the bank because gp-IRT's λ, gmp-IRT's blend, AIPW's regression and
k-means on correctness all need them (tinyBenchmarks, Polo et al. 2024; Zhang et al. 2025).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from irt.errors import ItemBankError
from irt.flags import MIN_SPREAD, ItemFlags, flag_items
from irt.params import ItemParams
from irt.responses import ResponseMatrix

__all__ = ["ItemBank", "BANK_FORMAT", "load_bank", "save_bank"]

BANK_FORMAT = "merge3-irt-bank-v1"


@dataclass(frozen=True)
class ItemBank:
    """Item parameters (N items), population abilities θ (M, D) and responses (M, N).

    ``validation``: an extra fit without the held-out population models, used to measure
    the IRT prediction error honestly (gp-IRT λ, gmp-IRT blend): keys ``alpha``, ``beta``,
    ``theta_train`` (abilities of the models it was fitted on), ``train`` and ``heldout``
    (row indices into the population).
    """

    params: ItemParams
    item_ids: tuple[str, ...]
    item_tasks: tuple[str, ...]
    model_ids: tuple[str, ...]
    theta: np.ndarray
    responses: np.ndarray
    metadata: dict[str, object] = field(default_factory=dict)
    validation: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return self.params.dims

    @property
    def n_items(self) -> int:
        return self.params.n_items

    @cached_property
    def flags(self) -> ItemFlags:
        """Discrimination diagnostics and the flagged items (irt/flags.py); the threshold
        is ``metadata["flag_threshold"]`` when a bank sets one, else MIN_SPREAD."""
        threshold = float(self.metadata.get("flag_threshold", MIN_SPREAD))
        return flag_items(self.params.alpha, self.theta, self.responses, self.item_tasks,
                          threshold)

    @property
    def flagged(self) -> dict[str, str]:
        """{item id: "negative" | "near-zero"} of the items left out of selection."""
        return self.flags.by_item(self.item_ids)

    @property
    def selectable(self) -> np.ndarray:
        """Indices of the unflagged items, the ones selectors may choose."""
        return np.flatnonzero(~self.flags.mask(self.n_items))

    def select_items(self, indices: np.ndarray) -> ItemBank:
        """The bank restricted to ``indices`` (same models and abilities); the validation
        fit's item parameters are restricted alike."""
        indices = np.asarray(indices, dtype=int)
        validation = dict(self.validation)
        for key in ("alpha", "beta"):
            if key in validation:
                validation[key] = validation[key][indices]
        return ItemBank(self.params.subset(indices), tuple(self.item_ids[i] for i in indices),
                        tuple(self.item_tasks[i] for i in indices), self.model_ids,
                        self.theta, self.responses[:, indices], dict(self.metadata),
                        validation)

    def population(self) -> ResponseMatrix:
        return ResponseMatrix(self.responses, self.model_ids, self.item_ids, self.item_tasks)

    def validation_params(self) -> ItemParams | None:
        if "alpha" not in self.validation:
            return None
        return ItemParams(self.validation["alpha"], self.validation["beta"])

    def save(self, directory: str | Path) -> Path:
        return save_bank(self, directory)

    @staticmethod
    def load(directory: str | Path) -> ItemBank:
        return load_bank(directory)

    def log_to_mlflow(self, directory: str | Path, artifact_path: str = "item_bank") -> None:
        """Log a saved bank directory as an MLflow artifact of the active run."""
        import mlflow

        mlflow.log_artifacts(str(directory), artifact_path=artifact_path)


def save_bank(bank: ItemBank, directory: str | Path) -> Path:
    """Write ``bank`` to ``directory`` (created if needed); returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"alpha": bank.params.alpha, "beta": bank.params.beta, "theta": bank.theta,
              "responses": bank.responses}
    arrays.update({f"validation_{k}": v for k, v in bank.validation.items()})
    np.savez(out / "params.npz", **arrays)
    header = {"format": BANK_FORMAT, "n_items": bank.n_items, "n_models": len(bank.model_ids),
              "dims": bank.dims, "item_ids": list(bank.item_ids),
              "item_tasks": list(bank.item_tasks), "model_ids": list(bank.model_ids),
              "metadata": bank.metadata,
              # for humans: load_bank recomputes the flags from the arrays
              "flagged": bank.flags.to_json(bank.item_ids)}
    (out / "bank.json").write_text(json.dumps(header, indent=1, default=str), encoding="utf-8")
    import pandas as pd

    items = {"item": bank.item_ids, "task": bank.item_tasks, "beta": bank.params.beta}
    for d in range(bank.dims):
        items[f"alpha_{d + 1}"] = bank.params.alpha[:, d]
    if bank.dims == 1:
        a, b = bank.params.two_pl()
        items["a"], items["b"] = a, b
    items["population_accuracy"] = np.nanmean(bank.responses, axis=0)
    items["ability_loading"] = bank.flags.loading
    items["logit_sd"] = bank.flags.spread
    flag = np.full(bank.n_items, "", dtype=object)
    flag[bank.flags.indices] = bank.flags.reasons
    items["flag"] = flag
    pd.DataFrame(items).to_csv(out / "items.csv", index=False)
    models = {"model": bank.model_ids, "accuracy": np.nanmean(bank.responses, axis=1)}
    for d in range(bank.dims):
        models[f"theta_{d + 1}"] = bank.theta[:, d]
    pd.DataFrame(models).to_csv(out / "models.csv", index=False)
    return out


def load_bank(directory: str | Path) -> ItemBank:
    """Read a bank written by :func:`save_bank`; errors name the missing/corrupt file."""
    path = Path(directory)
    header_path, arrays_path = path / "bank.json", path / "params.npz"
    for f in (header_path, arrays_path):
        if not f.exists():
            raise ItemBankError(f"{f} is missing: {path} is not an item bank.",
                                fix="create one with `merge3 irt calibrate RESPONSES --out "
                                    f"{path}`.")
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ItemBankError(f"{header_path} is not UTF-8 text.",
                            fix="recalibrate the bank.") from None
    except json.JSONDecodeError as err:
        raise ItemBankError(f"{header_path}, line {err.lineno}: invalid JSON ({err.msg}).",
                            fix="recalibrate the bank.") from None
    if not isinstance(header, dict):
        raise ItemBankError(f"{header_path} does not hold a JSON object.",
                            fix="recalibrate the bank.")
    if header.get("format") != BANK_FORMAT:
        raise ItemBankError(f"{header_path}: format {header.get('format')!r}, expected "
                            f"{BANK_FORMAT!r}.", fix="recalibrate with this merge3 version.")
    for key in ("item_ids", "item_tasks", "model_ids"):
        if not isinstance(header.get(key), list):
            raise ItemBankError(f"{header_path}: {key!r} is missing or not a list.",
                                fix="recalibrate the bank.")
    if not isinstance(header.get("metadata", {}), dict):
        raise ItemBankError(f"{header_path}: 'metadata' is not a JSON object.",
                            fix="recalibrate the bank.")
    arrays = _read_arrays(arrays_path)
    validation = {k.removeprefix("validation_"): v for k, v in arrays.items()
                  if k.startswith("validation_")}
    try:
        bank = ItemBank(ItemParams(arrays["alpha"], arrays["beta"]), tuple(header["item_ids"]),
                        tuple(header["item_tasks"]), tuple(header["model_ids"]),
                        arrays["theta"], arrays["responses"], header.get("metadata", {}),
                        validation)
        consistent = (bank.n_items == len(bank.item_ids) == len(bank.item_tasks)
                      and bank.theta.shape[0] == len(bank.model_ids)
                      and bank.responses.shape == (len(bank.model_ids), bank.n_items))
    except (ValueError, IndexError, TypeError):
        consistent = False
    if not consistent:
        raise ItemBankError(f"{path}: params.npz and bank.json disagree on the sizes.",
                            fix="recalibrate the bank.")
    return bank


def _read_arrays(arrays_path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``params.npz`` (never unpickled), or an error naming the file."""
    import zipfile

    try:
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, AttributeError, zipfile.BadZipFile) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ItemBankError(f"{arrays_path} cannot be read as an .npz archive ({reason}).",
                            fix="recalibrate the bank.") from None
    missing = [k for k in ("alpha", "beta", "theta", "responses") if k not in arrays]
    if missing:
        raise ItemBankError(f"{arrays_path} lacks the array(s) {', '.join(missing)}.",
                            fix="recalibrate the bank.")
    return arrays
