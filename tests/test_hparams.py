"""Typed hyperparameters: unknown keys, missing keys and wrong kinds are refused."""

import dataclasses
from typing import Literal

import ml_collections
import pytest

from ieu_jax.hparams import HParams


@dataclasses.dataclass(frozen=True)
class _Demo(HParams):
  epochs: int
  learning_rate: float = 0.01
  mode: Literal["a", "b"] = "a"
  exclude_true: bool = False
  max_grad_norm: float | None = None


def test_defaults_and_conversion():
  hp = _Demo.from_config({"epochs": 3, "learning_rate": 1})
  assert hp == _Demo(epochs=3, learning_rate=1.0)
  assert isinstance(hp.learning_rate, float)
  assert _Demo.from_config(ml_collections.ConfigDict({"epochs": 2})).epochs == 2
  assert hp.replace(mode="b").mode == "b"
  assert hp.to_dict() == {"epochs": 3, "learning_rate": 1.0, "mode": "a",
                          "exclude_true": False, "max_grad_norm": None}
  assert _Demo.from_config({"epochs": 1, "max_grad_norm": 5}).max_grad_norm == 5.0


def test_unknown_key_names_it_and_the_valid_keys():
  with pytest.raises(ValueError, match=r"IEU: unknown hyperparameter\(s\) \['exclude_True'\]"
                     r".*valid keys are \['epochs', 'exclude_true'"):
    _Demo.from_config({"epochs": 1, "exclude_True": True}, method="IEU")


def test_missing_and_wrong_kinds():
  with pytest.raises(ValueError, match=r"missing required hyperparameter\(s\) \['epochs'\]"):
    _Demo.from_config({})
  with pytest.raises(TypeError, match="epochs=2.5 must be an integer"):
    _Demo.from_config({"epochs": 2.5})
  with pytest.raises(TypeError, match="learning_rate='0.1' must be a number"):
    _Demo.from_config({"epochs": 1, "learning_rate": "0.1"})
  with pytest.raises(TypeError, match="exclude_true=1 must be True or False"):
    _Demo.from_config({"epochs": 1, "exclude_true": 1})
  with pytest.raises(ValueError, match=r"mode='c': expected one of \('a', 'b'\)"):
    _Demo.from_config({"epochs": 1, "mode": "c"})
  with pytest.raises(ValueError, match="unknown"):
    _Demo(epochs=1).replace(epoch=2)
