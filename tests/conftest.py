"""Test-session set-up: XLA:CPU's faster convolutions, as the binaries use them.

This runs before any test computes with JAX (the setting is read once, when the
backend starts); subprocesses started by tests inherit it through ``XLA_FLAGS``.
"""

import ieu_jax

ieu_jax.configure_cpu()
