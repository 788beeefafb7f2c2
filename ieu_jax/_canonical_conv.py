"""Convolutions whose backward pass XLA:CPU runs on its fast path, inside loops too.

``jax.grad`` of a convolution emits two convolutions: one for the input gradient
and one for the kernel gradient, whose dimension labels are not the canonical
``NHWC x HWIO`` (the kernel gradient reads ``f01b_i01o->01bf``). On XLA:CPU a
stand-alone jitted step canonicalises them, but inside a ``while`` loop
(``lax.scan``, ``fori_loop``) they stay as they are and are emitted as naive loops:
a small CNN's SGD step ran 4-5 times slower inside ``lax.scan`` than called from
Python (see ``docs/performance.md``).

:func:`canonicalize_convs` rewrites a function so that every plain convolution in
it (stride 1, no dilation, no feature or batch groups, two spatial dimensions) is a
``custom_vjp`` whose forward and both backward convolutions are written in the
canonical layout with explicit transposes. Values and input gradients were bit
for bit the same in our tests, kernel gradients the same to float32 rounding
(``tests/test_canonical_conv.py``); only the layout XLA sees changes. Other
convolutions are left untouched, and so are plain ones inside control flow or
other transformations (``lax.scan``, ``lax.cond``, ``jax.checkpoint``,
custom-derivative bodies): only nested ``jit`` calls are looked into. Values stay
right there; only the speed-up is lost. The rewrite supports first-order
differentiation and ``vmap``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core

__all__ = ["canonical_conv", "canonicalize_convs"]

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, padding, precision):
  return lax.conv_general_dilated(
      x, w, (1, 1), padding, dimension_numbers=_NHWC, precision=precision
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_nhwc(x, w, padding, precision):
  return _conv(x, w, padding, precision)


def _conv_nhwc_fwd(x, w, padding, precision):
  return _conv(x, w, padding, precision), (x, w)


def _conv_nhwc_bwd(padding, precision, res, g):
  x, w = res
  (lo_h, hi_h), (lo_w, hi_w) = padding
  kh, kw = w.shape[:2]
  # Input gradient: the flipped kernel with input and output features swapped.
  wt = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  dx = _conv(g, wt, ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w)),
             precision)
  # Kernel gradient: input channels act as the batch, examples as input features.
  zero = jnp.zeros((), x.dtype)
  xp = lax.pad(x, zero, ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)))
  dw = _conv(xp.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), "VALID", precision)
  return dx, dw.transpose(1, 2, 0, 3)


_conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def _is_plain(params: dict[str, Any]) -> bool:
  dn = params["dimension_numbers"]
  return (
      len(dn.lhs_spec) == 4
      and all(s == 1 for s in params["window_strides"])
      and all(d == 1 for d in params["lhs_dilation"])
      and all(d == 1 for d in params["rhs_dilation"])
      and params["feature_group_count"] == 1
      and params["batch_group_count"] == 1
      and params.get("preferred_element_type") is None
  )


def canonical_conv(lhs, rhs, params: dict[str, Any]):
  """A ``conv_general_dilated`` (given as its primitive's params) in canonical form."""
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  x = lhs.transpose(lhs_spec[0], lhs_spec[2], lhs_spec[3], lhs_spec[1])
  w = rhs.transpose(rhs_spec[2], rhs_spec[3], rhs_spec[1], rhs_spec[0])
  padding = tuple(tuple(int(p) for p in pad) for pad in params["padding"])
  y = _conv_nhwc(x, w, padding, params.get("precision"))
  to_out = (out_spec[0], out_spec[2], out_spec[3], out_spec[1])  # out dims as NHWC
  return y.transpose(np.argsort(to_out))


def _eval_jaxpr(jaxpr, consts, *args):
  env = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for v, x in zip(jaxpr.constvars, consts):
    env[v] = x
  for v, x in zip(jaxpr.invars, args):
    env[v] = x
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "conv_general_dilated" and _is_plain(eqn.params):
      outvals = [canonical_conv(*invals, eqn.params)]
    elif name in ("pjit", "jit"):  # inline nested jits so their convs are seen too
      closed = eqn.params["jaxpr"]
      outvals = _eval_jaxpr(closed.jaxpr, closed.consts, *invals)
    else:
      with eqn.ctx.manager:
        outvals = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
      if not eqn.primitive.multiple_results:
        outvals = [outvals]
    for v, x in zip(eqn.outvars, outvals):
      env[v] = x
  return [read(v) for v in jaxpr.outvars]


def canonicalize_convs(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with its plain convolutions replaced by :func:`canonical_conv`.

  Args:
    fn: a function of arrays and pytrees of arrays (e.g. ``apply_fn(params, x)``).

  Returns:
    A function with the same signature and the same values, whose gradients run
    canonical convolutions. It traces ``fn`` once per input shape.
  """

  @functools.wraps(fn)
  def wrapped(*args):
    flat, tree = jax.tree.flatten(args)
    abstract = [jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)) for a in flat]
    closed, out_shape = jax.make_jaxpr(
        lambda *f: fn(*jax.tree.unflatten(tree, f)), return_shape=True
    )(*abstract)
    out = _eval_jaxpr(closed.jaxpr, closed.consts, *flat)
    return jax.tree.unflatten(jax.tree.structure(out_shape), out)

  return wrapped
