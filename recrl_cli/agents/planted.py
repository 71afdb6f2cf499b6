"""A tiny whole-session world whose best slate per user is known (the agents' learning test and the planted
study of ``benchmarks/bench_agents_planted.py``).

Users and items fall into G taste groups (user u: u mod G, item i: i mod G). A user clicks an item of their own
group with probability σ(+2) ≈ 0.88 and any other with σ(−2) ≈ 0.12, whatever the history. So:

* the oracle shows K items of the user's group: reward ≈ 0.88 per step;
* a random slate matches with probability 1/G: ≈ 0.31 at G = 4;
* every constant slate also matches a random user's group with probability 1/G per slot: ``popular`` ≈ random.

A policy beats random and popular only by telling users apart. The group is also planted in one user feature
and one item feature (as taste shows in real profile and video features), so a policy can learn it from
features shared across users instead of 40 id embeddings; the ids and the clicks in the history carry it too.
The model is a :class:`UserResponseModel` whose item table, user state and behaviour vectors are planted, so
the environment, the agents' encoders (which read the feature tables) and the evaluation run unchanged.
"""

from __future__ import annotations

import torch

from recrl_cli.sim.config import EnvConfig, SimulatorConfig
from recrl_cli.sim.environment import WholeSessionEnv, response_weights
from recrl_cli.sim.response_model import NUM_BEHAVIOURS, UserResponseModel
from recrl_cli.sim.synthetic import POSITIVE_RATE, synthetic_feature_tables, synthetic_row_table

# The planted logit is KuaiSim's form, z = mean_d(A ⊙ e) + bias: bounded logits and no taste term (the
# simulator's defaults add a learned logit scale and a randomly initialised user x item taste score, which
# would blur the planted groups).
URM = dict(user_latent=8, item_latent=8, enc_dim=8, n_layers=1, n_heads=2, ff_dim=16, state_hidden=8,
           history_length=12, play_time_edges=(), bounded_logits=True, no_user_taste=True)  # fmt: skip
MATCH_LOGIT = 2.0


class PlantedModel(UserResponseModel):
    """Click logit z(u, i) = +2 if u ≡ i (mod G) else −2; the other behaviours never happen (logit −20).

    Item encoding e_i = √d·onehot(i mod G) (padding: 0); the user state is [onehot(u mod G), 0…] [B, 3d];
    the click vector A_click = 4√d·onehot(u mod G) − …, so mean_d(A ⊙ e) = 4·[match] and the bias −2 centres it.
    """

    def __init__(self, groups: int, users: int, items: int, seed: int = 1) -> None:
        u, i = synthetic_feature_tables(users, items, seed=seed)
        u.ids[1:, 0] = torch.arange(1, users + 1) % groups + 1  # user u's group + 1 (0 = padding)
        i.ids[1:, 1] = torch.arange(items) % groups + 1  # item n + 1 (candidate n): n mod G, + 1
        super().__init__(SimulatorConfig(**URM), u, i)
        if groups > self.cfg.enc_dim:
            raise ValueError("need groups <= enc_dim")
        self.groups = groups
        d = self.cfg.enc_dim
        ids = torch.arange(self.num_items + 1)
        table = torch.zeros(self.num_items + 1, d)
        table[ids[1:], (ids[1:] - 1) % groups] = d**0.5  # candidate n = item n + 1 is in group n mod G
        self.register_buffer("planted_items", table)
        with torch.no_grad():
            self.behaviour_bias.copy_(torch.tensor([-MATCH_LOGIT] + [-20.0] * (NUM_BEHAVIOURS - 1)))

    def group_of_user(self, user: torch.Tensor) -> torch.Tensor:
        return user % self.groups

    def item_table(self) -> torch.Tensor:
        return self.planted_items

    def user_state(self, user, hist_enc, feedback, mask) -> torch.Tensor:
        state = torch.zeros(user.shape[0], 3 * self.cfg.enc_dim, device=user.device)
        state[torch.arange(user.shape[0]), self.group_of_user(user)] = 1.0
        return state

    def behaviour_vectors(self, state: torch.Tensor) -> torch.Tensor:
        d = self.cfg.enc_dim
        vectors = torch.zeros(state.shape[0], NUM_BEHAVIOURS, d, device=state.device)
        vectors[:, 0] = state[:, :d] * 2 * MATCH_LOGIT * d**0.5  # mean_d(A ⊙ e) = 2·2·[match]
        return vectors


def planted_env(groups: int = 4, users: int = 40, items: int = 48, batch: int = 16, slate: int = 3,
                seed: int = 0) -> WholeSessionEnv:  # fmt: skip
    """The env of :class:`PlantedModel` (no item-correlation penalty: items of one group are identical, and
    the penalty would cost the oracle 0.2 per item)."""
    model = PlantedModel(groups, users, items)
    table = synthetic_row_table(users, items, rows_per_user=16, seed=2)
    cfg = EnvConfig(batch_users=batch, slate_size=slate, item_correlation=0.0, seed=seed)
    weights = response_weights(torch.tensor(POSITIVE_RATE), cfg.single_response)
    return WholeSessionEnv(model, cfg, table, torch.arange(table.num_rows), weights)
