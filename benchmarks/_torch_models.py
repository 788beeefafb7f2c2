"""PyTorch twins of ``ieu_jax.models`` with the same weights, for the benchmarks.

Each builder takes flax params and returns a ``torch.nn.Module`` (NCHW inputs) that
computes the same function; :func:`max_logit_difference` checks that it does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, dtype=np.float32))  # a writable copy


def _conv_weight(kernel) -> torch.Tensor:
  return _t(np.asarray(kernel).transpose(3, 2, 0, 1))  # HWIO -> OIHW


def small_cnn(params, features, hidden: int, num_classes: int, size: int = 28) -> nn.Module:
  """``models.SmallCNN``: conv-relu-pool twice, then two dense layers."""
  side = size // 4
  net = nn.Sequential(
      nn.Conv2d(1, features[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(features[0], features[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(features[1] * side * side, hidden), nn.ReLU(),
      nn.Linear(hidden, num_classes),
  )
  with torch.no_grad():
    for i, name in enumerate(("Conv_0", "Conv_1")):
      net[3 * i].weight.copy_(_conv_weight(params[name]["kernel"]))
      net[3 * i].bias.copy_(_t(params[name]["bias"]))
    # flax flattens NHWC, torch NCHW: permute the first dense layer's rows.
    w = np.asarray(params["Dense_0"]["kernel"]).reshape(side, side, features[1], hidden)
    net[7].weight.copy_(_t(w.transpose(2, 0, 1, 3).reshape(-1, hidden).T))
    net[7].bias.copy_(_t(params["Dense_0"]["bias"]))
    net[9].weight.copy_(_t(np.asarray(params["Dense_1"]["kernel"]).T))
    net[9].bias.copy_(_t(params["Dense_1"]["bias"]))
  return net


def _copy_norm(norm: nn.GroupNorm, p) -> None:
  norm.weight.copy_(_t(p["scale"]))
  norm.bias.copy_(_t(p["bias"]))


class _Block(nn.Module):

  def __init__(self, cin: int, cout: int, stride: int, p):
    super().__init__()
    groups = min(32, cout)
    # flax's SAME padding of a stride-2 3x3 conv on an even size pads (0, 1), not (1, 1).
    self.pad1 = nn.ZeroPad2d((0, 1, 0, 1)) if stride == 2 else nn.ZeroPad2d(1)
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0, bias=False)
    self.norm1 = nn.GroupNorm(groups, cout, eps=1e-6)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
    self.shortcut = None
    with torch.no_grad():
      self.conv1.weight.copy_(_conv_weight(p["Conv_0"]["kernel"]))
      self.conv2.weight.copy_(_conv_weight(p["Conv_1"]["kernel"]))
      _copy_norm(self.norm1, p["GroupNorm_0"])
      _copy_norm(self.norm2, p["GroupNorm_1"])
      if cin != cout or stride != 1:
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.GroupNorm(groups, cout, eps=1e-6))
        self.shortcut[0].weight.copy_(_conv_weight(p["Conv_2"]["kernel"]))
        _copy_norm(self.shortcut[1], p["GroupNorm_2"])

  def forward(self, x):
    y = torch.relu(self.norm1(self.conv1(self.pad1(x))))
    y = self.norm2(self.conv2(y))
    return torch.relu((x if self.shortcut is None else self.shortcut(x)) + y)


class _ResNet18(nn.Module):

  def __init__(self, params, width: int, cin: int):
    super().__init__()
    self.stem = nn.Conv2d(cin, width, 3, 1, 1, bias=False)
    self.norm = nn.GroupNorm(min(32, width), width, eps=1e-6)
    with torch.no_grad():
      self.stem.weight.copy_(_conv_weight(params["Conv_0"]["kernel"]))
      _copy_norm(self.norm, params["GroupNorm_0"])
    blocks, c, i = [], width, 0
    for stage in range(4):
      for b in range(2):
        cout, stride = width * 2**stage, (2 if stage > 0 and b == 0 else 1)
        blocks.append(_Block(c, cout, stride, params[f"_BasicBlock_{i}"]))
        c, i = cout, i + 1
    self.blocks = nn.Sequential(*blocks)
    dense = params["Dense_0"]
    self.head = nn.Linear(c, dense["kernel"].shape[1])
    with torch.no_grad():
      self.head.weight.copy_(_t(np.asarray(dense["kernel"]).T))
      self.head.bias.copy_(_t(dense["bias"]))

  def forward(self, x):
    x = self.blocks(torch.relu(self.norm(self.stem(x))))
    return self.head(x.mean(dim=(2, 3)))


def resnet18(params, width: int = 64, in_channels: int = 3) -> nn.Module:
  """``models.ResNet18`` (GroupNorm, the CIFAR form)."""
  return _ResNet18(params, width, in_channels)


def max_logit_difference(net: nn.Module, apply_fn, params, x_nhwc) -> float:
  """``max |torch logits - jax logits|`` on ``x_nhwc``: the twins compute the same."""
  with torch.no_grad():
    ours = net(torch.from_numpy(np.asarray(x_nhwc).transpose(0, 3, 1, 2).copy())).numpy()
  return float(np.abs(ours - np.asarray(apply_fn(params, x_nhwc))).max())
