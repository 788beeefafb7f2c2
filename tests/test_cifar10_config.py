"""The CIFAR-10 / ResNet-18 config: it validates, and its ``:tiny`` variant runs end to end.

The end-to-end run reads a few hundred synthetic 32x32x3 images through the same
``tfds:<name>`` path as ``tfds:cifar10`` (a TFDS data set prepared here in
array_record format; no network, no TensorFlow).
"""

import json
import os

import numpy as np
import PIL.Image
import pytest
import tensorflow_datasets as tfds

from experiments.configs import cifar10_resnet18
from ieu_jax import data as data_lib
from ieu_jax import experiment

_TRAIN, _TEST = 300, 100

with tfds.core.registered.skip_registration():

  class IeuTestCifarShaped(tfds.core.GeneratorBasedBuilder):
    """Ten classes of 32x32 RGB images, each class a noisy colour of its own."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(32, 32, 3)),
              "label": tfds.features.ClassLabel(num_classes=10)}),
          supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(_TRAIN, 0),
              "test": self._generate_examples(_TEST, 1)}

    def _generate_examples(self, n, seed):
      rng = np.random.default_rng(seed)
      colours = np.random.default_rng(99).integers(0, 256, (10, 3))
      for i in range(n):
        label = i % 10
        image = np.clip(colours[label] + rng.normal(0, 40, (32, 32, 3)), 0, 255)
        yield i, {"image": PIL.Image.fromarray(image.astype(np.uint8)), "label": label}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
  """``get_config('tiny')`` reading the synthetic images, prepared once for the module."""
  data_dir = tmp_path_factory.mktemp("tfds")
  IeuTestCifarShaped(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  c = cifar10_resnet18.get_config("tiny")
  c.data.name = "tfds:ieu_test_cifar_shaped"
  c.data.data_dir = str(data_dir)
  return c


def test_the_paper_scale_config_is_the_reference_protocol():
  c = cifar10_resnet18.get_config()
  assert experiment.validate_config(c)[0] == "Retrain"
  assert (c.data.name, c.data.val_size, c.data.max_train) == ("tfds:cifar10", 0.1, None)
  assert (c.forget.mode, c.forget.fraction) == ("random", 0.1)
  assert (c.model.name, c.model.norm, c.model.width) == ("resnet18", "batch", 64)
  assert (c.data.normalize, c.model.dtype) == ("per_channel", "float32")
  t = c.train
  assert (t.optimizer, t.learning_rate, t.weight_decay, t.epochs, t.batch_size) == (
      "sgd", 0.1, 5e-4, 160, 256)
  assert (t.schedule, tuple(t.milestones), t.augment) == ("multistep", (91, 136), "crop_flip")
  assert (c.method.FT.epochs, c.method.FT.learning_rate) == (10, 0.01)
  assert (c.method.GA.epochs, c.method.GA.learning_rate) == (5, 1e-4)
  assert c.method.RL.epochs == c.method.SalUn.epochs == 10
  with pytest.raises(ValueError, match="unknown config variant"):
    cifar10_resnet18.get_config("huge")


def test_the_pipeline_normalises_each_channel_by_the_training_part(tiny_config):
  splits, fs, _, _ = experiment.data_and_model(tiny_config)
  raw = data_lib.load_dataset(
      tiny_config.data.name, data_dir=tiny_config.data.data_dir,
      val_size=tiny_config.data.val_size, seed=int(tiny_config.seed))
  x = np.asarray(raw.train.x, np.float64)
  mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
  assert mean.shape == (3,) and np.ptp(mean) > 0.01  # three channels, each its own
  np.testing.assert_allclose(splits.channel_mean, mean, rtol=1e-12)
  np.testing.assert_allclose(splits.channel_std, std, rtol=1e-12)
  z = np.asarray(fs.train.x, np.float64)
  np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
  for part, source in (("val", raw.val.x), ("test", raw.test.x)):
    want = (np.asarray(source, np.float64) - mean) / std
    np.testing.assert_allclose(getattr(splits, part).x, want, rtol=1e-5, atol=1e-5)


def test_tiny_runs_end_to_end_through_tfds(tiny_config, tmp_path):
  c = tiny_config
  workdir = str(tmp_path / "run")
  experiment.run_experiment(c, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  sizes = results["sizes"]
  assert (sizes["train"], sizes["forget"], sizes["retain"]) == (270, 27, 243)
  assert results["config"]["train"]["augment"] == "crop_flip"
  assert results["config"]["data"]["normalize"] == "per_channel"
  rows = {r["name"]: r for r in results["methods"]}
  assert set(rows) == {"Retrain", "FT", "GA"}
  # The colours separate the classes: in 48 steps the recipe (crop, flip, multistep
  # SGD, BatchNorm in train mode, eval mode to test) lifts Retrain well above chance (10%).
  assert rows["Retrain"]["TA"] > 25.0
  assert all(np.isfinite(r[k]) for r in rows.values() for k in ("UA", "RA", "TA", "MIA"))
