"""State, parameter and observation pytrees of the crystal environment.

Shapes use S = max sites, E = max edges, V = number of actions (elements),
R = radial basis size, T = number of templates, G = len(GLOBAL_FEATURES).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from crystaljax.rewards import RewardParams

#: order of the entries of ``Observation.globals``
GLOBAL_FEATURES = (
    "a_over_10A", "b_over_10A", "c_over_10A", "cos_alpha", "cos_beta", "cos_gamma",
    "spacegroup_over_230", "target_over_scale", "progress",
)


@struct.dataclass
class TemplateTable:
    """All templates of an env, padded to S sites and E edges (gathered by template id)."""

    num_sites: jnp.ndarray  # int32 [T]
    lattice: jnp.ndarray  # f32 [T, 3, 3], Å, rows are lattice vectors
    frac_coords: jnp.ndarray  # f32 [T, S, 3]
    volume: jnp.ndarray  # f32 [T], Å^3
    lattice_features: jnp.ndarray  # f32 [T, 7]: a, b, c /10 Å, cos angles, spacegroup/230
    senders: jnp.ndarray  # int32 [T, E]
    receivers: jnp.ndarray  # int32 [T, E]
    distances: jnp.ndarray  # f32 [T, E], Å (0 on padding edges)
    edge_mask: jnp.ndarray  # bool [T, E]
    fill_orders: jnp.ndarray  # int32 [T, S, S]: BFS order from each start site (pad: -1)


@struct.dataclass
class EnvParams:
    """Everything the pure step reads. Leaves are arrays, so params can be vmapped."""

    templates: TemplateTable
    template_probs: jnp.ndarray  # f32 [T], probability of each template at reset
    element_masses: jnp.ndarray  # f32 [V], amu
    element_features: jnp.ndarray  # f32 [V, F], see crystaljax.elements.FEATURE_NAMES
    reward: RewardParams
    target_scale: jnp.ndarray  # f32 [], divides the target in the globals
    rbf_centers: jnp.ndarray  # f32 [R], Å
    rbf_width: jnp.ndarray  # f32 [], Å


@struct.dataclass
class EnvState:
    """One env's episode state.

    tokens: int32 [S] element index per site, V = empty (padding sites stay V).
    order: int32 [S] fill order of this episode (site indices, -1 past num_sites).
    step: int32 [] number of sites filled so far; the focus site is ``order[step]``.
    template_id: int32 [] row of the template table.
    """

    tokens: jnp.ndarray
    order: jnp.ndarray
    step: jnp.ndarray
    template_id: jnp.ndarray


@struct.dataclass
class Observation:
    """What the agent sees (one env; vmapped batches add leading axes).

    tokens: int32 [S] element index per site, V = empty or padding.
    focus: bool [S] the site the next action fills (all False once finished).
    node_mask: bool [S] real sites.
    edge_features: f32 [E, R] Gaussian expansion of the edge distances.
    distances: f32 [E] Å.   senders, receivers: int32 [E].   edge_mask: bool [E].
    globals: f32 [G] see GLOBAL_FEATURES.
    action_mask: bool [V] allowed elements for the focus site.
    template_id: int32 [].
    """

    tokens: jnp.ndarray
    focus: jnp.ndarray
    node_mask: jnp.ndarray
    edge_features: jnp.ndarray
    distances: jnp.ndarray
    senders: jnp.ndarray
    receivers: jnp.ndarray
    edge_mask: jnp.ndarray
    globals: jnp.ndarray
    action_mask: jnp.ndarray
    template_id: jnp.ndarray
