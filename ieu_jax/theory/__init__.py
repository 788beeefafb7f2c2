"""The convergence bounds of full-batch IEU, and their check against trajectories.

Full-batch IEU on a retain loss ``R`` (``mu_R``-strongly convex, ``L_R``-smooth)
and a forget loss ``F`` (convex, ``L_F``-smooth) iterates::

    theta_{t+1} = Phi(theta_t) + sigma * xi_t,      xi_t ~ N(0, I_d),
    Phi(theta)  = (1 - eta * lambda) * theta - eta * (grad R(theta) - alpha_f * grad F(theta)),

which is :func:`ieu_jax._transforms.ieu_transform`. ``docs/theory.md`` states and
proves three results about it. The package:

* :mod:`ieu_jax.theory.bounds`: the right-hand sides of the three results
  (:func:`contraction_factor`, :func:`noisy_sq_distance_bound`,
  :func:`relearn_steps_bounds` and their companions).
* :mod:`ieu_jax.theory.constants`: the constants they take, exact for quadratics
  and bounded from the data for logistic regression, and the exact quantities
  the bounds estimate on quadratics.
* :mod:`ieu_jax.theory.check`: :func:`ieu_jax.theory.check.run_theory_check`
  runs float64 trajectories of the product's code against every bound
  (``experiments/theory_check.py``), on the problems of
  :mod:`ieu_jax.theory.problems`, with the trajectories of
  :mod:`ieu_jax.theory.simulate` and the plots of :mod:`ieu_jax.theory.plots`.
  Import it explicitly: it needs JAX and optax, the bounds do not.

The bounds and constants are re-exported here (``theory.contraction_factor``);
they are pure NumPy functions in float64.
"""

from ieu_jax.theory import bounds
from ieu_jax.theory import constants
from ieu_jax.theory.bounds import contraction_conditions
from ieu_jax.theory.bounds import contraction_factor
from ieu_jax.theory.bounds import ContractionConditions
from ieu_jax.theory.bounds import noiseless_distance_bound
from ieu_jax.theory.bounds import noisy_sq_distance_bound
from ieu_jax.theory.bounds import relearn_contraction_factors
from ieu_jax.theory.bounds import relearn_steps_bounds
from ieu_jax.theory.bounds import stationary_sq_distance_bound
from ieu_jax.theory.constants import hessian_extremes
from ieu_jax.theory.constants import logistic_curvature_bounds
from ieu_jax.theory.constants import logistic_ieu_constants
from ieu_jax.theory.constants import quadratic_constants
from ieu_jax.theory.constants import quadratic_exact_contraction
from ieu_jax.theory.constants import quadratic_expected_sq_distance
from ieu_jax.theory.constants import quadratic_ieu_fixed_point
from ieu_jax.theory.constants import quadratic_ieu_jacobian
from ieu_jax.theory.constants import quadratic_stationary_sq_distance
from ieu_jax.theory.constants import QuadraticConstants

__all__ = bounds.__all__ + constants.__all__
