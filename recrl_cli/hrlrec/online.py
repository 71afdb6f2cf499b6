"""Lists in the simulator: rewards of a simulated list, the rule-based baselines, and policy evaluation.

One env step of :class:`recrl_cli.sim.environment.WholeSessionEnv` with slate K = T is one list per user: the
env samples the 7 behaviours and the play seconds of every position at once; :class:`ListScorer` turns them into
the per-position rewards of :mod:`recrl_cli.hrlrec.rewards` (clicks = ``is_click``; dwell = ``play_seconds``,
0 for a simulator without a play-time head).

Baselines (non-learning, the same list for every user since their ranker is not personalised):

- ``quota``: fixed-quota channel mixing. Each channel gets round(T · logged share) slots (largest remainder,
  capped by its candidate count), filled with its top-ranked candidates and interleaved by slot spacing.
- ``single-ranker``: the T best items of the pooled candidate lists by the same ranker score, channels ignored.
- ``random``: T distinct pool items per user, uniformly (a calibration floor).

Simulator references (issue 14 item 3; the same construction as :func:`recrl_cli.sim.evaluate.evaluate_policies`,
restricted to the candidate pool P, the union of the channels' candidate lists, that every other row draws from):

- ``popular``: the best constant list, the T pool items of highest mean expected reward
  (:meth:`WholeSessionEnv.expected_reward`) over the user states the ``random`` row visits on these users
  (:func:`recrl_cli.sim.policies.popular_slate`);
- ``oracle``: per user and step the T pool items of highest immediate expected reward
  (:func:`recrl_cli.sim.policies.oracle_greedy`).

Both are *chosen* by the simulator's expected reward (Σ_b w_b P(b | i), the env's behaviour weights), but
*scored*, like every row, by :class:`ListScorer` on HRL-Rec's own per-position list reward
(:mod:`recrl_cli.hrlrec.rewards`: click + dwell + diversity + novelty). So ``oracle`` is the simulator's myopic
ceiling, not necessarily the best list under HRL-Rec's reward (it ignores diversity and novelty), and it can
score below ``popular`` or even ``random`` there: a gap whose ceiling does not beat its floor is reported as 0
and :func:`list_verdict` says so. Gap fractions of the run's policy on ``reward`` (Σ r^H per list):
``agent/gap_fraction`` = (agent − random) / (oracle − random), ``agent/gap_vs_popular`` =
(agent − popular) / (oracle − popular), and ``popular/gap_fraction``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recrl_cli.hrlrec.channels import Channels
from recrl_cli.hrlrec.metrics import ListMetrics
from recrl_cli.hrlrec.rewards import ListRewards, RewardWeights, history_tag_union, list_rewards, multi_hot
from recrl_cli.sim.environment import Observation, StepResult, WholeSessionEnv
from recrl_cli.sim.evaluate import gap, verdict
from recrl_cli.sim.policies import oracle_greedy, popular_slate
from recrl_cli.sim.rollout import rollout

Policy = Callable[[Observation], torch.Tensor]  # obs of B users -> items [B, T] (candidate indices)


class ListScorer:
    """Tags, channels and reward weights: rewards of a list of candidate indices [B, T]."""

    def __init__(self, item_tags: torch.Tensor, vocab: int, channels: Channels, weights: RewardWeights,
                 novelty_window: int) -> None:  # fmt: skip
        self.item_tags = item_tags  # [N + 1, L], by encoded id
        self.vocab, self.channels, self.weights, self.window = vocab, channels, weights, novelty_window
        self.item_sets = multi_hot(item_tags[1:], vocab)  # [N, V], by candidate index

    def score(self, obs: Observation, items: torch.Tensor, clicks: torch.Tensor, play: torch.Tensor
              ) -> tuple[ListRewards, torch.Tensor]:  # fmt: skip
        """-> (rewards, tag_sets [B, T, V]) of lists ``items`` shown to the users of ``obs``."""
        sets = self.item_sets[items]
        hist = history_tag_union(obs.items, obs.mask, self.item_tags, self.vocab, self.window)
        return list_rewards(clicks, play, sets, hist, self.channels.channel_of[items], self.weights), sets

    def step_rewards(self, obs: Observation, items: torch.Tensor, result: StepResult
                     ) -> tuple[ListRewards, torch.Tensor]:  # fmt: skip
        play = (
            result.play_seconds
            if result.play_seconds is not None
            else torch.zeros_like(items, dtype=torch.float)
        )
        return self.score(obs, items, result.responses[..., 0], play)


def quota_list(channels: Channels, length: int) -> torch.Tensor:
    """The quota baseline's list [T] (see the module docstring). Runs once per run (C small), not per step."""
    sizes = channels.valid.sum(1).tolist()
    share = channels.logged_share.tolist()
    quota = [min(int(length * s), n) for s, n in zip(share, sizes, strict=True)]
    # Largest remainder among channels with room, until T slots are assigned.
    while sum(quota) < length:
        room = [c for c in range(len(quota)) if quota[c] < sizes[c]]
        if not room:
            break
        quota[max(room, key=lambda c: length * share[c] - quota[c])] += 1
    picks, keys = [], []
    for c, q in enumerate(quota):
        picks += channels.candidates[c, :q].tolist()
        keys += [(j + 0.5) / q for j in range(q)]  # spread a channel's slots evenly over the list
    order = sorted(range(len(picks)), key=lambda i: keys[i])
    return torch.tensor([picks[i] for i in order], dtype=torch.long, device=channels.candidates.device)


def single_ranker_list(channels: Channels, length: int) -> torch.Tensor:
    """The T best pooled candidates by ranker score, [T]."""
    pool = channels.pool()
    return pool[channels.score[pool].argsort(descending=True, stable=True)[:length]]


def fixed_policy(items: torch.Tensor) -> Policy:
    """The same list ``items`` [T] for every user."""
    return lambda obs: items.expand(obs.user.shape[0], -1)


def random_policy(channels: Channels, length: int, generator: torch.Generator) -> Policy:
    """T distinct pool items per user, uniformly (top-T of random keys)."""
    pool = channels.pool()

    def act(obs: Observation) -> torch.Tensor:
        keys = torch.rand(obs.user.shape[0], len(pool), generator=generator, device=pool.device)
        return pool[keys.topk(length, dim=1).indices]

    return act


def evaluate_policy(env: WholeSessionEnv, policy: Policy, scorer: ListScorer, steps: int, day_steps: int,
                    seed: int) -> dict[str, float]:  # fmt: skip
    """``policy`` rolled out for ``steps`` lists per user row from ``seed`` (:func:`recrl_cli.sim.rollout.rollout`:
    the same fresh users for every policy evaluated with ``seed``); the :class:`ListMetrics` summary."""
    metrics = ListMetrics(scorer.channels.names, day_steps)

    def observe(obs: Observation, items: torch.Tensor, result: StepResult) -> None:
        rewards, sets = scorer.step_rewards(obs, items, result)
        play = result.play_seconds if result.play_seconds is not None else torch.zeros_like(rewards.click)
        metrics.update(scorer.channels.channel_of[items], rewards.click, play, sets, rewards)

    rollout(env, policy, steps, seed, observe)
    return metrics.summary()


def evaluate_lists(env: WholeSessionEnv, policies: dict[str, Policy], scorer: ListScorer, steps: int,
                   day_steps: int, seed: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """{policy: :class:`ListMetrics` summary} for ``policies`` (obs of B users -> lists [B, T]; ``"agent"`` is
    the run's policy) and the references ``random``, ``popular`` and ``oracle`` (module docstring), every one
    rolled out for ``steps`` steps from ``seed`` (the same users), T = ``env.slate``. Adds ``gap_fraction`` and
    ``gap_vs_popular`` on ``reward`` to ``agent`` (when given) and ``gap_fraction`` to ``popular``. Re-seeds and
    resets ``env``."""
    t, pool = env.slate, scorer.channels.pool()  # pool: [P] item indices
    draw = random_policy(scorer.channels, t, torch.Generator(env.device).manual_seed(seed))
    expected = torch.zeros(env.num_items, device=env.device)  # [N] Σ over steps of the mean over rows

    def random_visiting(obs: Observation) -> torch.Tensor:
        expected.add_(env.expected_reward().mean(0))  # popular's average user: the states random visits
        return draw(obs)

    def run(policy: Policy) -> dict[str, float]:
        return evaluate_policy(env, policy, scorer, steps, day_steps, seed)

    out = {who: run(policy) for who, policy in policies.items()}
    out["random"] = run(random_visiting)
    popular = pool[popular_slate(expected[pool] / steps, t)]  # [T]
    out["popular"] = run(fixed_policy(popular))
    out["oracle"] = run(lambda obs: oracle_greedy(env, pool=pool))
    rand, pop, orc = (out[p]["reward"] for p in ("random", "popular", "oracle"))
    out["popular"]["gap_fraction"] = gap(pop, rand, orc)
    if "agent" in out:
        out["agent"]["gap_fraction"] = gap(out["agent"]["reward"], rand, orc)
        out["agent"]["gap_vs_popular"] = gap(out["agent"]["reward"], pop, orc)
    return out


def list_verdict(name: str, results: dict[str, dict[str, float]]) -> list[str]:
    """:func:`recrl_cli.sim.evaluate.verdict` on HRL-Rec's list reward (``reward`` ± ``reward_se``): the
    references the run's policy does not beat, a world without headroom; and an oracle that does not beat
    popular on this reward (``gap_vs_popular`` then 0)."""
    lines = verdict(name, results, key="reward", label="list reward")
    rand, pop, orc = (results[p]["reward"] for p in ("random", "popular", "oracle"))
    if rand < orc <= pop:
        lines.append("the oracle (greedy by the simulator's expected reward) does not beat popular on the list "
                     "reward: gap_vs_popular is reported as 0")  # fmt: skip
    return lines
