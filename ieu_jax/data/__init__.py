"""Data sets for the unlearning experiments: loading, splitting, forget sets.

Three sources, chosen by name in :func:`load_dataset`:

* ``'fashion_mnist'``: Fashion-MNIST read from its IDX files (the default
  embedded data set, no network). Debian's package ``dataset-fashion-mnist``
  installs them in ``/usr/share/datasets/fashion-mnist``; ``data_dir`` points
  elsewhere.
* ``'digits'``: scikit-learn's bundled 8x8 digits (1797 examples), for tiny
  tests. It has no test split of its own: one is carved out (20%).
* ``'tfds:<name>'`` (``'tfds:cifar10'``, ``'tfds:cifar100'``, ...): any
  TensorFlow Datasets data set that is prepared on disk in a random-access
  format (``array_record``), read through ``tfds.data_source``, which needs no
  TensorFlow. ``data_dir`` is the TFDS data directory. Nothing is downloaded
  unless ``download=True`` is passed.

Every data set becomes a :class:`Splits` of three :class:`Dataset` s (train,
val, test) with images as ``float32`` in ``[0, 1]``, layout NHWC, and ``int32``
labels, held on the default JAX device (``normalize='per_channel'``: standardised
per channel by the training part's statistics instead). All randomness (the validation
carve-out, subsampling, forget-set selection, relabelling) comes from an integer
seed through NumPy's ``SeedSequence``, so a split is the same on every machine
and every host of a multi-host run, and it is recorded as index arrays.

:func:`select_forget` divides a training set into a forget set and a retain set
for the scenarios of the experiments: random forgetting of a fraction, forgetting
a whole class, and removal of contaminated data (a random fraction relabelled to
wrong classes, which then is the forget set).

Example::

  splits = load_dataset('digits', seed=0)
  fs = select_forget(splits.train, mode='random', fraction=0.1, seed=0)
  len(fs.forget), len(fs.retain)   # (129, 1165)
"""

from ieu_jax.data._forget import FORGET_MODES
from ieu_jax.data._forget import ForgetSplit
from ieu_jax.data._forget import select_forget
from ieu_jax.data._idx import FASHION_MNIST_DIR
from ieu_jax.data._idx import read_idx
from ieu_jax.data._splits import channel_stats
from ieu_jax.data._splits import Dataset
from ieu_jax.data._splits import load_dataset
from ieu_jax.data._splits import NORMALIZATIONS
from ieu_jax.data._splits import Splits

__all__ = [
    "Dataset",
    "ForgetSplit",
    "Splits",
    "FASHION_MNIST_DIR",
    "FORGET_MODES",
    "NORMALIZATIONS",
    "channel_stats",
    "load_dataset",
    "read_idx",
    "select_forget",
]
