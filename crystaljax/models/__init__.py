"""Graph networks on crystal observations (Flax linen): MEGNet torso and heads."""

from crystaljax.models.heads import HeadMLP, QHead, dueling_combine
from crystaljax.models.layers import MASKED_LOGIT, MLP, NoisyDense, Set2Set
from crystaljax.models.megnet import MEGNet, MEGNetBlock, MEGNetConfig, element_table
from crystaljax.models.networks import (
    ActorCriticNetwork,
    PolicyNetwork,
    QNetwork,
    QOutput,
    ValueNetwork,
    element_table_for,
    mask_invalid,
    megnet_config_for,
)

__all__ = ["ActorCriticNetwork", "HeadMLP", "MASKED_LOGIT", "MEGNet", "MEGNetBlock", "MEGNetConfig",
           "MLP", "element_table", "NoisyDense", "PolicyNetwork", "QHead", "QNetwork", "QOutput",
           "Set2Set", "ValueNetwork", "dueling_combine", "element_table_for", "mask_invalid",
           "megnet_config_for"]
