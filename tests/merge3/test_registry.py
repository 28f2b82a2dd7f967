"""merge3.registry: did you mean, type checks, lazy entries, plug-ins, per-registry errors."""

from __future__ import annotations

import pytest

from irt import ESTIMATORS, IRTError, UnknownIRTNameError
from merge3.errors import MergeError, UnknownNameError
from merge3.registry import Registry


class _Shape:
    """What the test registries hold."""


def test_unknown_names_suggest_the_closest_and_raise_the_registrys_error() -> None:
    registry: Registry[_Shape] = Registry("shape", _Shape, error=UnknownIRTNameError)
    registry.register("square", _Shape())
    with pytest.raises(UnknownIRTNameError, match="Unknown shape 'sqare'. Did you mean 'square'"):
        registry.get("sqare")
    # one error is both the package's root error and a registry's UnknownNameError
    with pytest.raises(IRTError):
        ESTIMATORS.get("gmp-irtt")
    with pytest.raises(UnknownNameError, match="Did you mean 'gmp-irt'"):
        ESTIMATORS.get("gmp-irtt")
    with pytest.raises(TypeError, match="subclass of merge3.errors.UnknownNameError"):
        Registry("shape", error=MergeError)


def test_the_default_and_lazy_entries_are_resolved_and_checked() -> None:
    registry: Registry[object] = Registry("estimator", ESTIMATORS.check, default="plain",
                                        expects="Estimator instance")
    registry.register("plain", "irt.estimators:ESTIMATORS")  # lazy, and not an Estimator
    with pytest.raises(TypeError, match="expected Estimator instance, got"):
        registry.get()
    registry.unregister("plain")
    registry.register("plain", "irt.estimators:AnchorMean")  # a class, not an instance
    with pytest.raises(TypeError):
        registry.get("plain")
    assert "plain" in registry and registry.names() == ("plain",) and len(registry) == 1
    with pytest.raises(ValueError, match="already registered"):
        registry.register("plain", "irt.estimators:AnchorMean")


def test_plug_ins_are_imported_and_checked_like_entries() -> None:
    registry: Registry[_Shape] = Registry("shape", _Shape)
    with pytest.raises(UnknownNameError, match="expected _Shape, got <function did_you_mean"):
        registry.get("merge3.registry:did_you_mean")  # importable, but not a shape
    with pytest.raises(UnknownNameError, match="has no 'did_you_men'.*did_you_mean"):
        registry.get("merge3.registry:did_you_men")
    with pytest.raises(UnknownNameError, match="Cannot import"):
        registry.get("merge3.no_such_module:thing")
    found = ESTIMATORS.get("tests.merge3.test_registry:HALF")
    assert found is HALF and "tests.merge3.test_registry:HALF" not in ESTIMATORS


class _Half:
    uses_endpoints = False

    def predict(self, prepared, y, endpoints):  # noqa: ANN001, ANN201
        return y[:, 0] * 0 + 0.5, y[:, 0] * 0


HALF = _Half()
