"""In-graph oracles: properties computed in ``jnp`` inside the jitted step.

An in-graph oracle is ``fn(tokens [S], template_id [], params) -> (value f32 [], status
int32 [])`` where ``params`` is the env's params pytree (it reads ``element_masses`` and
``templates.volume``). It cannot fail: its status is always OK.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

#: 1 amu / Å^3 in g/cm^3
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def fixed_lattice_density(tokens: jnp.ndarray, template_id: jnp.ndarray,
                          params: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Density of the decorated template without relaxation, in g/cm³.

    Args:
      tokens: int32 ``[S]`` element index per site (``V`` = empty/padding, mass 0).
      template_id: int32 ``[]``.
      params: env params with ``element_masses`` f32 [V] (amu) and ``templates.volume``
        f32 [T] (Å^3).
    Returns:
      (density f32 [], status int32 [] = 0).
    """
    masses = jnp.concatenate([params.element_masses, jnp.zeros((1,), jnp.float32)])
    total_mass = masses[tokens].sum()
    volume = params.templates.volume[template_id]
    return total_mass / volume * AMU_PER_A3_TO_G_PER_CM3, jnp.zeros((), jnp.int32)


#: in-graph oracles by property name
IN_GRAPH_ORACLES = {"density": fixed_lattice_density}
