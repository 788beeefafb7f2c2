"""Flax models: a small CNN (the CPU default) and ResNet-18 in its CIFAR form.

Every model is used through ``apply_fn(variables, x) -> logits`` (see
:func:`build_model`): the unlearning code never sees Flax collections. A model's
normalisation is its ``norm`` field: ``"none"``, ``"group"`` (GroupNorm) or
``"batch"`` (BatchNorm). With ``"none"`` or ``"group"`` the variables are the params
and a forward pass is a pure function of them; with ``"batch"`` they are an
:class:`ieu_jax._state.Variables` pair ``(params, {"batch_stats": ...})`` and
``apply_fn(variables, x, train=True)`` runs in train mode (``docs/design.md``,
"Models").

A model's ``dtype`` (:data:`DTYPES`) is its compute dtype: ``"bfloat16"`` runs the
convolutions and dense layers in bfloat16 while the params stay float32 (flax's
``dtype`` against ``param_dtype``); normalisation layers compute, and BatchNorm
keeps its statistics, in float32, and the logits come back as float32, so losses
and metrics are float32. ``"float32"`` (the default) builds the layers exactly as
before the field existed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ieu_jax._conv import Conv
from ieu_jax._pooling import max_pool
from ieu_jax._state import Variables

__all__ = ["DTYPES", "SmallCNN", "ResNet18", "MLP", "build_model", "MODELS", "NORMS"]

NORMS = ("none", "group", "batch")
DTYPES = ("float32", "bfloat16")
"""The compute dtypes a model's ``dtype`` field takes (params stay float32)."""


def compute_dtype(dtype: str) -> Any:
  """The flax layer ``dtype`` for a model's ``dtype`` name: None (flax's default,
  float32 here) for ``"float32"``, ``jnp.bfloat16`` for ``"bfloat16"``.

  Raises:
    ValueError: naming an unknown ``dtype``.
  """
  if dtype == "float32":
    return None
  if dtype == "bfloat16":
    return jnp.bfloat16
  raise ValueError(f"dtype={dtype!r} is unknown: choose one of {DTYPES}.")


def _logits(x: jax.Array, dtype: str) -> jax.Array:
  """The logits as float32 (a no-op in float32)."""
  return x if dtype == "float32" else x.astype(jnp.float32)


def _norm(kind: str, features: int, train: bool, dtype: str = "float32") -> Callable:
  """The normalisation layer of ``kind`` for ``features`` channels.

  BatchNorm is flax's with PyTorch's defaults (``momentum=0.9`` here is PyTorch's
  0.1; ``epsilon=1e-5``); it normalises with the batch's statistics in train mode
  and with the running ones in eval mode. Flax's running variance is the batch's
  biased variance, PyTorch's the unbiased one. With ``dtype="bfloat16"`` the layer
  still computes in float32 (its output is float32; the next layer casts it).
  """
  norm_dtype = None if dtype == "float32" else jnp.float32
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=norm_dtype)
  if kind == "group":
    return nn.GroupNorm(num_groups=min(32, features), dtype=norm_dtype)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"norm={kind!r} is unknown: choose one of {NORMS}.")


class SmallCNN(nn.Module):
  """Two 3x3 conv layers with max-pooling, then a dense hidden layer.

  The layers are flax's, written to be cheap on CPU (``docs/performance.md``):
  :class:`ieu_jax._conv.Conv` (``nn.Conv``'s parameters; a one-channel input is
  convolved as taps) and :func:`ieu_jax._pooling.max_pool` (flax's values and
  gradients, a cheaper gradient).
  """

  num_classes: int
  features: Sequence[int] = (32, 64)
  hidden: int = 128
  norm: str = "none"
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    dt = compute_dtype(self.dtype)
    for f in self.features:
      if self.norm == "none":
        x = nn.relu(Conv(f, (3, 3), dtype=dt)(x))
      else:  # no conv bias before a normalisation (its shift has one)
        x = nn.relu(_norm(self.norm, f, train, self.dtype)(
            Conv(f, (3, 3), use_bias=False, dtype=dt)(x)))
      x = max_pool(x, (2, 2))
    x = x.reshape(x.shape[:-3] + (-1,))
    x = nn.relu(nn.Dense(self.hidden, dtype=dt)(x))
    return _logits(nn.Dense(self.num_classes, dtype=dt)(x), self.dtype)


class MLP(nn.Module):
  """A plain multilayer perceptron on flattened inputs (tiny tests)."""

  num_classes: int
  hidden: Sequence[int] = (64,)
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    dt = compute_dtype(self.dtype)
    x = x.reshape(x.shape[:-3] + (-1,))
    for h in self.hidden:
      x = nn.relu(nn.Dense(h, dtype=dt)(x))
    return _logits(nn.Dense(self.num_classes, dtype=dt)(x), self.dtype)


class _BasicBlock(nn.Module):
  features: int
  strides: int = 1
  norm: str = "group"
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = lambda: _norm(self.norm, self.features, train, self.dtype)
    dt = compute_dtype(self.dtype)
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, dtype=dt)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, dtype=dt)(y)
    y = norm()(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False, dtype=dt)(x)
      x = norm()(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 for small images: 3x3 stem, stride 1, no max-pool (the CIFAR form)."""

  num_classes: int
  width: int = 64
  norm: str = "group"
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, train: bool = False):
    dt = compute_dtype(self.dtype)
    x = nn.Conv(self.width, (3, 3), use_bias=False, dtype=dt)(x)
    x = nn.relu(_norm(self.norm, self.width, train, self.dtype)(x))
    for stage, blocks in enumerate((2, 2, 2, 2)):
      for b in range(blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = _BasicBlock(self.width * 2**stage, strides, self.norm, self.dtype)(x, train)
    x = jnp.mean(x, axis=(-3, -2))
    return _logits(nn.Dense(self.num_classes, dtype=dt)(x), self.dtype)


MODELS = {"cnn": SmallCNN, "resnet18": ResNet18, "mlp": MLP}


def build_model(
    name: str, num_classes: int, input_shape: Sequence[int], **kwargs
) -> tuple[Callable, Callable]:
  """Returns ``(init_fn, apply_fn)`` for a model of :data:`MODELS`.

  ``init_fn(key) -> variables`` initialises for inputs of ``input_shape`` (one
  example, e.g. ``(28, 28, 1)``). A model without state (no BatchNorm) has its
  params as variables, and ``apply_fn(params, x) -> logits``. A model with
  BatchNorm has ``Variables(params, {"batch_stats": ...})``:
  ``apply_fn(variables, x) -> logits`` in eval mode (the running statistics),
  ``apply_fn(variables, x, train=True) -> (logits, new_state)`` in train mode
  (the batch's statistics, and the running ones updated from them).

  Raises:
    ValueError: for an unknown model name.
  """
  if name not in MODELS:
    raise ValueError(f"model={name!r} is unknown: choose one of {sorted(MODELS)}.")
  module = MODELS[name](num_classes=num_classes, **kwargs)

  def init_fn(key):
    variables = dict(module.init(key, jnp.zeros((1, *input_shape), jnp.float32)))
    params = variables.pop("params")
    return Variables(params, variables) if variables else params

  def apply_fn(variables, x, train=False):
    if not isinstance(variables, Variables):
      return module.apply({"params": variables}, x)
    full = {"params": variables.params, **variables.state}
    if train:
      logits, state = module.apply(full, x, train=True, mutable=list(variables.state))
      return logits, dict(state)
    return module.apply(full, x)

  return init_fn, apply_fn
