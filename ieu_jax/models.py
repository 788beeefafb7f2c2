"""Flax models: a small CNN (the CPU default) and ResNet-18 in its CIFAR form.

Every model is used through ``apply_fn(params, x) -> logits`` (see
:func:`build_model`): the unlearning code never sees Flax collections. ResNet-18
therefore normalises with GroupNorm rather than BatchNorm, so that a forward pass
is a pure function of the parameters (no running statistics to carry through
unlearning and relearning); this is a documented deviation from the paper's model.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ieu_jax._conv import Conv
from ieu_jax._pooling import max_pool

__all__ = ["SmallCNN", "ResNet18", "MLP", "build_model", "MODELS"]


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

  @nn.compact
  def __call__(self, x):
    for f in self.features:
      x = nn.relu(Conv(f, (3, 3))(x))
      x = max_pool(x, (2, 2))
    x = x.reshape(x.shape[:-3] + (-1,))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


class MLP(nn.Module):
  """A plain multilayer perceptron on flattened inputs (tiny tests)."""

  num_classes: int
  hidden: Sequence[int] = (64,)

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[:-3] + (-1,))
    for h in self.hidden:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(self.num_classes)(x)


class _BasicBlock(nn.Module):
  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    norm = lambda: nn.GroupNorm(num_groups=min(32, self.features))
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
    y = norm()(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x)
      x = norm()(x)
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 for small images: 3x3 stem, stride 1, no max-pool (the CIFAR form)."""

  num_classes: int
  width: int = 64

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.width, (3, 3), use_bias=False)(x)
    x = nn.relu(nn.GroupNorm(num_groups=min(32, self.width))(x))
    for stage, blocks in enumerate((2, 2, 2, 2)):
      for b in range(blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = _BasicBlock(self.width * 2**stage, strides)(x)
    x = jnp.mean(x, axis=(-3, -2))
    return nn.Dense(self.num_classes)(x)


MODELS = {"cnn": SmallCNN, "resnet18": ResNet18, "mlp": MLP}


def build_model(
    name: str, num_classes: int, input_shape: Sequence[int], **kwargs
) -> tuple[Callable, Callable]:
  """Returns ``(init_fn, apply_fn)`` for a model of :data:`MODELS`.

  ``init_fn(key) -> params`` initialises for inputs of ``input_shape`` (one
  example, e.g. ``(28, 28, 1)``); ``apply_fn(params, x) -> logits``.

  Raises:
    ValueError: for an unknown model name.
  """
  if name not in MODELS:
    raise ValueError(f"model={name!r} is unknown: choose one of {sorted(MODELS)}.")
  module = MODELS[name](num_classes=num_classes, **kwargs)

  def init_fn(key):
    return module.init(key, jnp.zeros((1, *input_shape), jnp.float32))["params"]

  def apply_fn(params, x):
    return module.apply({"params": params}, x)

  return init_fn, apply_fn
