"""Reliability: every bad input refused before any work, by name; finished work kept;
no number that depends on an unrelated choice; a killed run resumes to the same table.

The end-to-end runs use a tiny config (the bundled 8x8 digits, a small CNN, short
training and relearning) so that each takes seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments.configs import fashion_mnist
from ieu_jax import experiment
from ieu_jax import methods as methods_lib
from ieu_jax.generative import experiment as gen_experiment
from experiments.configs import ddpm_fashion_mnist

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_TINY = {"data.name": "digits", "data.max_test": 300, "model.features": (8,),
         "model.hidden": 32, "train.epochs": 4, "method.FT.epochs": 1,
         "method.GA.epochs": 1, "method.IEU.epochs": 1, "rcd.max_steps": 8,
         "rcd.num_trajectories": 2, "rcd.relearn_size": 32, "eval.mia_max_per_class": 200}
"""The tiny run: ``:small`` on the bundled 8x8 digits, a smaller CNN, shorter everything."""


def _tiny(methods="Retrain,FT,GA,IEU"):
  c = fashion_mnist.get_config("small")
  c.methods = methods
  for path, value in _TINY.items():
    _set(c, path, value)
  return c


def _overrides():
  """``(path, value, what the message must say)``: one bad value per config section."""
  return [
      ("seed", -1, "config.seed=-1"),
      ("methods", "", "names no method"),
      ("methods", "Retrain,XX", "unknown method 'XX'"),
      ("data.val_size", 1.5, "val_size=1.5 must be in [0, 1)"),
      ("data.max_train", 0, "max_train=0 must be a positive integer"),
      ("forget.mode", "some", "mode='some': expected one of"),
      ("forget.fraction", 0.0, "fraction=0.0 must be in (0, 1)"),
      ("model.hidden", 0, "config.model: hidden=0"),
      ("model.name", "vit", "name='vit' is unknown"),
      ("train.epochs", 0, "config.train: epochs=0 must be a positive integer"),
      ("train.learning_rate", float("nan"), "learning_rate=nan must be a finite positive"),
      ("train.batch_size", 0, "config.train: batch_size=0"),
      ("train.optimizer", "rmsprop", "optimizer='rmsprop'"),
      ("eval.batch_size", 0, "config.eval: batch_size=0"),
      ("eval.mia_max_per_class", 0, "mia_max_per_class=0"),
      ("rcd.max_steps", 0, "config.rcd: max_steps=0"),
      ("rcd.relearn_size", 0, "relearn_size=0"),
      ("rcd.eval_every", 3, "max_steps=40 is not a multiple of eval_every=3"),
      ("rcd.momentum", -0.5, "momentum=-0.5 must be in [0, 1)"),
      ("rcd.criterion", "auc", "criterion='auc'"),
      ("rcd.tolerance", -1.0, "tolerance=-1.0"),
      ("rcd.formulation", "pmap", "formulation='pmap'"),
      ("method.GA.learning_rate", -0.003, "GA: learning_rate=-0.003 must be a finite positive"),
      ("method.GA.epochs", 0, "GA: epochs=0"),
      ("method.IEU.noise_std", -1e-3, "IEU: noise_std=-0.001 must be a finite number >= 0"),
      ("method.IEU.weight_decay", float("inf"), "IEU: weight_decay=inf"),
      ("method.FT.batch_size", 0, "FT: batch_size=0"),
      ("method.FT.momentum", 1.0, "FT: momentum=1.0 must be in [0, 1)"),
  ]


def _set(config, path, value):
  *parents, leaf = path.split(".")
  node = config
  for p in parents:
    node = node[p]
  with config.unlocked():
    node[leaf] = value


@pytest.mark.parametrize("path,value,says", _overrides())
def test_bad_values_are_refused_before_any_work(tmp_path, path, value, says):
  config = fashion_mnist.get_config("small")
  if path.startswith("method.") and "GA" not in config.methods.split(","):
    config.methods = "Retrain,FT,GA,IEU"
  _set(config, path, value)
  start = time.perf_counter()
  with pytest.raises((ValueError, TypeError), match=_escape(says)):
    experiment.run_experiment(config, str(tmp_path))
  assert time.perf_counter() - start < 10.0  # refused before loading or training anything
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize("value", ["no", 1, None])
@pytest.mark.parametrize("which", ["classifier", "generative"])
def test_a_bad_save_unlearned_is_refused_before_any_work(tmp_path, which, value):
  """A config built by hand can hold anything (the flag parser takes only a bool)."""
  if which == "classifier":
    config, run = fashion_mnist.get_config("small"), experiment.run_experiment
  else:
    config, run = ddpm_fashion_mnist.get_config("small"), gen_experiment.run_generative
  with config.unlocked():
    del config["save_unlearned"]  # the field is typed bool: set it anew, untyped
    config.save_unlearned = value
  start = time.perf_counter()
  with pytest.raises(ValueError, match=_escape(f"config.save_unlearned={value!r} must be True"
                                               " or False")):
    run(config, str(tmp_path))
  assert time.perf_counter() - start < 10.0
  assert not os.path.exists(tmp_path / "checkpoints")


def test_generative_bad_values_are_refused_before_any_work(tmp_path):
  for path, value, says in [("train.epochs", 0, "config.train: epochs=0"),
                            ("forget_class", -2, "config.forget_class=-2"),
                            ("diffusion.beta_end", 2.0, "beta_end=2.0 must be in (0, 1)"),
                            ("rcd.threshold_fraction", 0.0, "threshold_fraction=0.0"),
                            ("method.IEU.noise_std", -1.0, "IEU: noise_std=-1.0"),
                            ("unet.channels", (), "channels=()")]:
    config = ddpm_fashion_mnist.get_config("small")
    _set(config, path, value)
    with pytest.raises((ValueError, TypeError), match=_escape(says)):
      gen_experiment.run_generative(config, str(tmp_path))
    assert not os.path.exists(tmp_path / "checkpoints")


def test_a_misspelt_hyperparameter_names_itself_and_the_valid_keys():
  with pytest.raises(ValueError, match=r"RL: unknown hyperparameter\(s\) \['exclude_True'\];"
                     r" valid keys are \[.*'exclude_true'"):
    methods_lib.hparams("RL", {"epochs": 1, "learning_rate": 0.1, "exclude_True": True})


def _escape(text):
  import re  # pylint: disable=g-import-not-at-top
  return re.escape(text)


def _run_binary(*args, timeout=300):
  return subprocess.run([sys.executable, "-m", "experiments.unlearn", *args], cwd=_ROOT,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_binary_says_one_line_and_exits_non_zero(tmp_path):
  out = _run_binary("--config=experiments/configs/fashion_mnist.py:small",
                    f"--workdir={tmp_path}", "--config.methods=Retrain,GA",
                    "--config.method.GA.learning_rate=-0.003")
  assert out.returncode == 1
  lines = [l for l in out.stderr.splitlines() if l and not l[:1] in "IW"]  # absl log lines
  assert lines == ["error: GA: learning_rate=-0.003 must be a finite positive number."]
  assert "Traceback" not in out.stderr


def _copy_models(src, dst):
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(os.path.join(src, "checkpoints"), os.path.join(dst, "checkpoints"))


def _rows(results):
  skip = ("runtime_s",)
  return {m["name"]: {k: v for k, v in m.items() if k not in skip} for m in results["methods"]}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reliability_full"))
  return workdir, experiment.run_experiment(_tiny(), workdir)


@pytest.mark.slow
def test_a_method_gives_the_same_row_alone_and_in_a_longer_list(full_run, tmp_path):
  workdir, results = full_run
  _copy_models(workdir, str(tmp_path))
  alone = experiment.run_experiment(_tiny("Retrain,IEU"), str(tmp_path))
  assert _rows(alone)["IEU"] == _rows(results)["IEU"]
  assert _rows(alone)["Retrain"] == _rows(results)["Retrain"]


@pytest.mark.slow
def test_a_failing_method_is_reported_and_the_others_are_kept(full_run, tmp_path, monkeypatch):
  workdir, results = full_run
  _copy_models(workdir, str(tmp_path))
  ft = methods_lib.REGISTRY["FT"]

  def broken(*args, **kwargs):
    raise ZeroDivisionError("integer division or modulo by zero")

  monkeypatch.setitem(methods_lib.REGISTRY, "FT", ft._replace(unlearn=broken))
  out = experiment.run_experiment(_tiny(), str(tmp_path))
  assert out["failed"] == [{"name": "FT",
                            "error": "ZeroDivisionError: integer division or modulo by zero"}]
  want = _rows(results)
  assert _rows(out) == {k: v for k, v in want.items() if k != "FT"}
  assert "| FT | failed: ZeroDivisionError" in open(tmp_path / "results.md").read()


@pytest.mark.slow
def test_a_run_killed_in_the_methods_phase_resumes_to_the_same_table(full_run, tmp_path):
  workdir, results = full_run
  config = ("--config=experiments/configs/fashion_mnist.py:small",
            "--config.methods=Retrain,FT,GA,IEU", f"--workdir={tmp_path}",
            *(f"--config.{k}={v}" for k, v in _TINY.items()))
  proc = subprocess.Popen([sys.executable, "-m", "experiments.unlearn", *config], cwd=_ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  rows_dir = tmp_path / "methods"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if rows_dir.exists() and len(os.listdir(rows_dir)) >= 2:  # Retrain and FT are done
      break
    time.sleep(0.2)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (tmp_path / ".lock").exists() and not (tmp_path / "results.json").exists()
  out = _run_binary(*config)  # takes the stale lock over, reuses models and finished rows
  assert out.returncode == 0, out.stderr[-2000:]
  resumed = json.load(open(tmp_path / "results.json"))
  assert _rows(resumed) == _rows(results)
  assert resumed["original"] == results["original"]


def test_a_sweep_checks_every_cell_before_any_work(tmp_path):
  from ieu_jax import comparison  # pylint: disable=g-import-not-at-top
  config = fashion_mnist.get_config("small")
  with pytest.raises(ValueError, match="unknown scenario 'random90'"):
    comparison.sweep(config, str(tmp_path), ["random10", "random90"], [0])
  with pytest.raises(ValueError, match="config.seed=-1"):
    comparison.sweep(config, str(tmp_path), ["random10"], [0, -1])
  assert not os.path.exists(tmp_path / "random10")


@pytest.mark.slow
def test_an_attacker_with_a_rate_grid_keeps_each_orders_fastest_rate(full_run, tmp_path):
  workdir, _ = full_run
  _copy_models(workdir, str(tmp_path))
  config = _tiny("Retrain,GA")
  import ml_collections  # pylint: disable=g-import-not-at-top
  config.rcd = ml_collections.ConfigDict(dict(config.rcd.to_dict(), attackers=("sgd",),
                                              learning_rates=(0.003, 0.01)))
  experiment.run_experiment(config, str(tmp_path))
  json_rows = os.listdir(tmp_path / "methods")
  assert len(json_rows) == 2
  saved = json.load(open(tmp_path / "methods" / sorted(json_rows)[0]))["relearning"]["sgd"]
  assert len(saved["first_hit"]) == config.rcd.num_trajectories  # K orders, not 2K


@pytest.mark.slow
def test_a_rerun_reuses_the_finished_rows(full_run, tmp_path, monkeypatch):
  """The persisted rows are read back, not recomputed: with every method broken, a
  rerun on the same workdir still writes the full table."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir, results = full_run
  shutil.copytree(workdir, tmp_path / "w", ignore=shutil.ignore_patterns(".lock"))

  def broken(*args, **kwargs):
    raise RuntimeError("recomputed")

  for name in ("FT", "GA", "IEU"):
    monkeypatch.setitem(methods_lib.REGISTRY, name,
                        methods_lib.REGISTRY[name]._replace(unlearn=broken))
  out = experiment.run_experiment(_tiny(), str(tmp_path / "w"))
  assert out["failed"] == [] and _rows(out) == _rows(results)


def _tree_digest(root):
  """``{relative path: SHA-256 of its bytes}`` of every file under ``root``."""
  import hashlib  # pylint: disable=g-import-not-at-top
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      path = os.path.join(d, f)
      out[os.path.relpath(path, root)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
  return out


@pytest.mark.slow
def test_save_unlearned_false_saves_none_and_a_rerun_with_true_reuses_everything(
    full_run, tmp_path, monkeypatch):
  """``save_unlearned`` is operational: with False no unlearned model is written and
  the rows record None; a rerun with True reuses the models and the rows (it needs no
  save, and a method that would be recomputed fails here), to the same numbers."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir, results = full_run
  shutil.copytree(os.path.join(workdir, "checkpoints"), tmp_path / "checkpoints",
                  ignore=shutil.ignore_patterns("unlearned"))
  config = _tiny("Retrain,GA")
  config.save_unlearned = False
  out = experiment.run_experiment(config, str(tmp_path))
  assert not (tmp_path / "checkpoints" / "unlearned").exists()
  assert [m["checkpoint"] for m in out["methods"]] == [
      experiment.unlearned_checkpoint(config, "Retrain"), None]
  assert out["restored_from_checkpoint"] == {"original": True, "retrain": True}

  def broken(*args, **kwargs):
    raise RuntimeError("recomputed")

  monkeypatch.setitem(methods_lib.REGISTRY, "GA",
                      methods_lib.REGISTRY["GA"]._replace(unlearn=broken))
  config.save_unlearned = True
  again = experiment.run_experiment(config, str(tmp_path))
  assert again["failed"] == [] and _rows(again) == _rows(out)
  assert not (tmp_path / "checkpoints" / "unlearned").exists()
  want = _rows(results)
  for name in ("Retrain", "GA"):  # the same numbers as the run that saved its models
    assert {k: v for k, v in _rows(out)[name].items() if k != "checkpoint"} == {
        k: v for k, v in want[name].items() if k != "checkpoint"}


@pytest.mark.slow
def test_a_changed_hyperparameter_saves_a_new_checkpoint_and_keeps_the_others(
    full_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  workdir, results = full_run
  shutil.copytree(workdir, tmp_path / "w", ignore=shutil.ignore_patterns(".lock"))
  unlearned = tmp_path / "w" / "checkpoints" / "unlearned"
  before = _tree_digest(unlearned)
  by_name = {m["name"]: m["checkpoint"] for m in results["methods"]}
  assert all(os.path.isdir(tmp_path / "w" / by_name[n]) for n in ("FT", "GA", "IEU"))
  config = _tiny("Retrain,FT,GA")
  config.method.GA.learning_rate = 2e-3
  out = experiment.run_experiment(config, str(tmp_path / "w"))
  ga = {m["name"]: m["checkpoint"] for m in out["methods"]}["GA"]
  assert ga != by_name["GA"] and os.path.isdir(tmp_path / "w" / ga)
  after = _tree_digest(unlearned)
  assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
  assert {k.split(os.sep)[0] for k in set(after) - set(before)} == {
      os.path.basename(ga), os.path.basename(ga) + ".json"}
