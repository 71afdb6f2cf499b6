"""The world check: can a simulated world tell a personalised policy from a popularity list?

Run at the end of ``recrl train simulator`` and by ``recrl check simulator RUN``. It measures, for one trained
response model on its prepared data:

- **fit**: per behaviour, the simulator's AUC on the held-out rows (val + test) and, when the planted truth of
  a synthetic set is given, the truth's AUC on the same rows; the mean predicted rate against the observed one;
  the user × item share of the click logit the simulator recovered (:func:`recrl_cli.sim.truth.interaction_share`);
- **headroom** in the whole-session env on fresh users, the same users and draws for every policy: ``random``
  slates, ``popular`` (the best constant slate: the K items of highest mean expected reward over the states random
  visits) and ``oracle`` (per-user greedy top-K of the simulator's own expected reward); total reward per session,
  depth, reward per step, and the constant slate's share of the oracle − random gap;
- **fusion headroom** in the fusion env (:mod:`recrl_cli.mtf.env`, fusing the given ranker, or the simulator
  itself when none is given; the fusion runs' default candidates and train-fitted reward weights), the same users
  and draws for every policy: ``random`` fusion, the best ``fixed`` fusion (one action for everyone, a small
  search), the ``best_fusion`` per request (the best of M actions of the ranker's targets) and the ``per_user``
  best slate (:mod:`recrl_cli.mtf.calibration`); the realised figures per request, and the ``expected_reward``
  per request of every policy on the same requests (:func:`recrl_cli.mtf.calibration.expected_headroom`:
  paired, no sampling noise), which the verdict reads: the best fusion's gain over the better of random and
  fixed fusion, and the fixed fusion's share of that gap. Per request, not per session: a fusion acts per
  request, and the per-session total also carries which sessions happen to finish in the window (on a small set
  it swung by more than the whole gap between two seeds). Skipped, with a note, without a play-time head;
- **item diversity**: mean pairwise cosine of the item encodings (the env's correlation penalty reads them).

:func:`verdict` turns that into warnings: a world whose constant slate reaches more than ``POPULAR_LIMIT`` of
the gap cannot rank personalised policies against a popularity list, nor one whose best fusion per request is
less than ``FUSION_MIN_GAIN`` above random and fixed fusion (or whose fixed fusion reaches more than
``POPULAR_LIMIT`` of that gap) personalised fusion policies against a fixed fusion; rates off by more
than ``RATE_LIMIT``× make every reward mix that weighs those behaviours invented.

Shapes: B users in parallel, K slate, N items, J rewarded behaviours.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.errors import DataError
from recrl_cli.evaluation.metrics import auc
from recrl_cli.mtf import calibration
from recrl_cli.mtf.calibration import POLICIES as FUSION_POLICIES
from recrl_cli.mtf.config import MTFRunConfig
from recrl_cli.mtf.env import FALLBACK_WEIGHTS, FusionEnv
from recrl_cli.mtf.ranker import TASTE_FREE_NAME
from recrl_cli.mtf.weights import fit_reward_weights
from recrl_cli.sim.config import EnvConfig
from recrl_cli.sim.data import KuaiRandData, row_batch
from recrl_cli.sim.environment import WholeSessionEnv
from recrl_cli.sim.evaluate import evaluate_policies
from recrl_cli.sim.response_model import UserResponseModel
from recrl_cli.sim.train import score_rows

POLICIES = ("random", "popular", "oracle")
HEADROOM_KEYS = ("total_reward", "depth", "avg_reward", "sessions")
# + the paired expected reward per request; best_fusion also one action per user session (expected_headroom)
FUSION_KEYS = (*HEADROOM_KEYS, "expected_reward", "expected_reward_per_session")
POPULAR_LIMIT = 0.6  # the constant slate's (fixed fusion's) share of the gap above which a world is flagged
# Least gain per request of the per-user best fusion over the better of random and fixed fusion: below it every
# fusion policy is within a few per cent of every other, too little for a fusion comparison to show an effect.
FUSION_MIN_GAIN = 0.05
FUSION_SKIPPED = "fusion rows skipped: the simulator has no play-time head (model.play_time_edges is empty)"
RATE_LIMIT = 2.0  # predicted / observed rate (either way) above which a behaviour is flagged
MIN_POSITIVES = 20  # a behaviour's rate is checked only with this many held-out positives (else: noise)


@dataclass
class WorldCheck:
    """Everything the check measured; :meth:`metrics` flattens it for MLflow, :func:`render` prints it."""

    auc: dict[str, float]
    truth_auc: dict[str, float] | None
    predicted_rate: dict[str, float]
    observed_rate: dict[str, float]
    positives: dict[str, int]
    headroom: dict[str, dict[str, float]]
    item_cosine: float
    interaction: dict[str, float] | None = None
    fusion: dict[str, dict[str, float]] | None = None  # policy of recrl_cli.mtf.calibration -> HEADROOM_KEYS
    fusion_note: str = ""  # why there are no fusion rows
    fusion_ranker: str = ""  # the ranker the fusion rows fused ("" = the simulator ranked for itself)
    warnings: list[str] = field(default_factory=list)

    @property
    def popular_gap(self) -> float:
        """(popular − random) / (oracle − random) of the total reward per session (NaN if no gap)."""
        return gap_fraction(self.headroom, "total_reward")

    @property
    def fusion_gap(self) -> float:
        """(fixed − random) / (best_fusion − random) of the fusion env's expected reward per request
        (:func:`fusion_reading`; NaN if no gap or no fusion rows)."""
        return fusion_gap_fraction(self.fusion, "fixed") if self.fusion is not None else float("nan")

    @property
    def fusion_gain(self) -> float:
        """best_fusion / max(random, fixed) − 1 of the expected reward per request (:func:`fusion_reading`): what
        a personalised fusion policy can win over the best non-personalised one (NaN without fusion rows)."""
        if self.fusion is None:
            return float("nan")
        key, ceiling = fusion_reading(self.fusion)
        floor = max(self.fusion["random"][key], self.fusion["fixed"][key])
        return self.fusion[ceiling][key] / floor - 1.0 if floor > 0 else float("nan")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"world/popular_gap": self.popular_gap, "world/item_cosine": self.item_cosine}
        if self.fusion is not None:
            out["world/fusion_gap"] = self.fusion_gap
            out["world/fusion_gain"] = self.fusion_gain
            out["world/fusion/ranker_is_simulator"] = float(not self.fusion_ranker)
            out["world/fusion/ranker_is_taste_free_view"] = float(self.fusion_ranker == TASTE_FREE_NAME)
            for policy, values in self.fusion.items():
                out |= {f"world/fusion/{policy}/{k}": v for k, v in values.items()}
        elif self.fusion_note:
            out["world/fusion/skipped"] = 1.0
        for b in BEHAVIOURS:
            out[f"world/{b}/auc"] = self.auc[b]
            out[f"world/{b}/predicted_rate"] = self.predicted_rate[b]
            out[f"world/{b}/observed_rate"] = self.observed_rate[b]
            out[f"world/{b}/positives"] = float(self.positives[b])
            if self.truth_auc is not None:
                out[f"world/{b}/truth_auc"] = self.truth_auc[b]
        for policy, values in self.headroom.items():
            out |= {f"world/{policy}/{k}": v for k, v in values.items()}
        if self.interaction is not None:
            out["world/interaction_r2"] = self.interaction["r2"]
        return out

    @classmethod
    def from_metrics(cls, metrics: dict[str, float], prefix: str = "") -> WorldCheck | None:
        """Rebuild a check from :meth:`metrics` (keys ``<prefix>world/...``), or None when there is none."""
        m = {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix + "world/")}
        if "world/popular_gap" not in m:
            return None
        get = lambda b, k: m.get(f"world/{b}/{k}", float("nan"))  # noqa: E731
        has_truth = f"world/{BEHAVIOURS[0]}/truth_auc" in m
        table = {p: {k: get(p, k) for k in HEADROOM_KEYS} for p in POLICIES}
        fusion = None
        # Only the rows and figures logged: a check logged before best_fusion and expected_reward had fewer.
        if "world/fusion/random/total_reward" in m:
            fusion = {p: {k: m[f"world/fusion/{p}/{k}"] for k in FUSION_KEYS if f"world/fusion/{p}/{k}" in m}
                      for p in FUSION_POLICIES if f"world/fusion/{p}/total_reward" in m}  # fmt: skip
        check = cls(
            auc={b: get(b, "auc") for b in BEHAVIOURS},
            truth_auc={b: get(b, "truth_auc") for b in BEHAVIOURS} if has_truth else None,
            predicted_rate={b: get(b, "predicted_rate") for b in BEHAVIOURS},
            observed_rate={b: get(b, "observed_rate") for b in BEHAVIOURS},
            positives={b: int(get(b, "positives")) for b in BEHAVIOURS}, headroom=table,
            item_cosine=m["world/item_cosine"],
            interaction={"r2": m["world/interaction_r2"]} if "world/interaction_r2" in m else None,
            fusion=fusion, fusion_note=FUSION_SKIPPED if "world/fusion/skipped" in m else "",
            fusion_ranker=TASTE_FREE_NAME if m.get("world/fusion/ranker_is_taste_free_view") == 1.0
            else "a separate ranker" if m.get("world/fusion/ranker_is_simulator") == 0.0 else "",
        )  # fmt: skip
        check.warnings = verdict(check)
        return check

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {"popular_gap": self.popular_gap, "fusion_gap": self.fusion_gap,
                                           "fusion_gain": self.fusion_gain}  # fmt: skip


def gap_fraction(table: dict[str, dict[str, float]], key: str, policy: str = "popular",
                 ceiling: str = "oracle") -> float:  # fmt: skip
    """(policy − random) / (ceiling − random) of ``key`` in a headroom table (NaN when ceiling ≤ random)."""
    lo, hi = table["random"][key], table[ceiling][key]
    return (table[policy][key] - lo) / (hi - lo) if hi > lo else float("nan")


def fusion_gap_fraction(table: dict[str, dict[str, float]], policy: str) -> float:
    """:func:`gap_fraction` of a fusion table on the figure and ceiling of :func:`fusion_reading`: (policy −
    random) / (best_fusion − random) of the expected reward per request in a current check."""
    key, ceiling = fusion_reading(table)
    return gap_fraction(table, key, policy, ceiling=ceiling)


@torch.no_grad()
def fit_metrics(model: UserResponseModel, data: KuaiRandData, truth: torch.Tensor | None,
                rows: torch.Tensor) -> dict[str, dict]:  # fmt: skip
    """AUC (simulator, truth), predicted and observed rates and positives per behaviour on ``rows`` [N]."""
    logits = score_rows(model, data.rows, rows)
    probs = model.probabilities(logits)
    labels = data.rows.labels[rows].float()
    out: dict[str, dict] = {"auc": {}, "truth_auc": {} if truth is not None else None, "predicted_rate": {},
                            "observed_rate": {}, "positives": {}}  # fmt: skip
    for j, b in enumerate(BEHAVIOURS):
        out["auc"][b] = auc(logits[:, j], labels[:, j])
        if truth is not None:
            out["truth_auc"][b] = auc(truth[:, j], labels[:, j])
        out["predicted_rate"][b] = float(probs[:, j].mean())
        out["observed_rate"][b] = float(labels[:, j].mean())
        out["positives"][b] = int(labels[:, j].sum())
    return out


@torch.no_grad()
def user_logit_grid(model: UserResponseModel, data: KuaiRandData, rows: torch.Tensor) -> torch.Tensor:
    """The simulator's click logit of every item for the state before each of ``rows`` [U] (one per user):
    [U, N]."""
    model.eval()
    b = row_batch(data.rows, rows, model.cfg.history_length, model.cfg.same_request)
    table = model.item_table()
    state = model.user_state(b.user, table[b.hist_items], b.feedback, b.mask)
    vectors = model.behaviour_vectors(state)[:, :1]
    return model.score_all(vectors, table[1:], torch.zeros(1, dtype=torch.long, device=rows.device))[..., 0]


def first_rows(data: KuaiRandData, split: str = "val") -> torch.Tensor:
    """The first row of each user in ``split``: LongTensor [U']."""
    rows = data.splits[split]
    user = data.rows.user[rows]
    first = torch.ones_like(user, dtype=torch.bool)
    first[1:] = user[1:] != user[:-1]
    return rows[first]


def headroom(model: UserResponseModel, data: KuaiRandData, env_cfg: EnvConfig, steps: int,
             seed: int = 0) -> dict[str, dict[str, float]]:  # fmt: skip
    """random / popular / oracle in the whole-session env, ``steps`` steps each on the users of ``seed``, as the
    agents' evaluation measures them (:func:`recrl_cli.sim.evaluate.evaluate_policies`): per policy
    ``total_reward`` and ``depth`` (per session over a 20-step horizon), ``avg_reward`` (per step) and
    ``sessions`` (those counted)."""
    slate = min(env_cfg.slate_size, model.num_items)  # a tiny catalogue still gets a table
    env = WholeSessionEnv.from_data(model, data, dataclasses.replace(env_cfg, seed=seed, slate_size=slate))
    table = evaluate_policies(env, None, steps, seed)
    return {p: {k: table[p][k] for k in HEADROOM_KEYS} for p in POLICIES}


def fusion_headroom(model: UserResponseModel, data: KuaiRandData, env_cfg: EnvConfig, steps: int,
                    seed: int = 0, *, ranker: UserResponseModel | None = None, retrieved: int | None = None,
                    random: int | None = None, realised: bool = True) -> dict[str, dict[str, float]]:  # fmt: skip
    """random / fixed / best_fusion / per_user (:mod:`recrl_cli.mtf.calibration`) in the fusion env, ``steps``
    requests each from the same seed, with the figures of :func:`headroom` (``avg_reward`` per request). The env
    is what a fusion run builds: ``ranker`` (None = the simulator ranks for itself, as a run without
    ``--ranker``), ``retrieved`` + ``random`` candidates (None = the fusion runs' defaults, capped at the
    catalogue), reward weights fitted on the train rows; the fixed action is searched on ``steps // 4`` requests
    of other users (seed + 1). ``realised=False``: only ``expected_reward`` per policy (no rollout of each policy,
    a fifth of the cost). The model and the ranker need a play-time head."""
    m = MTFRunConfig()
    n = model.num_items
    slate = min(env_cfg.slate_size, n)
    retrieved = min(m.retrieved if retrieved is None else retrieved, n)
    random = min(m.random_candidates if random is None else random, n - retrieved)
    weights = tuple(m.weights)
    if m.weights_from == "data":
        try:
            weights = fit_reward_weights(data.rows, data.splits["train"])
        except DataError:  # too few users to fit: the documented fallback
            weights = FALLBACK_WEIGHTS
    sim = WholeSessionEnv.from_data(model, data, dataclasses.replace(env_cfg, seed=seed, slate_size=slate))
    env = FusionEnv(sim, ranker if ranker is not None else model, retrieved=retrieved, random=random,
                    weights=weights)  # fmt: skip
    fixed = calibration.best_fixed_fusion(env, max(1, steps // 4), seed + 1)
    choices = calibration.fusion_candidates(fixed, seed + 2)
    policies = calibration.policies(fixed, seed + 2)
    table = {name: calibration.run_calibration(env, serve, steps, seed) if realised else {}
             for name, serve in policies.items()}  # fmt: skip
    expected = calibration.expected_headroom(env, steps, seed, fixed, choices)
    out = {name: row | {"expected_reward": expected[name]} for name, row in table.items()}
    out["best_fusion"]["expected_reward_per_session"] = expected["best_fusion_session"]
    return out


@torch.no_grad()
def item_cosine(model: UserResponseModel) -> float:
    """Mean pairwise cosine of the item encodings (1..N, the diagonal excluded): near 1 = collapsed items."""
    unit = F.normalize(model.item_table()[1:], dim=-1)
    n = unit.shape[0]
    s = unit.sum(0)
    return float(((s @ s) - n) / (n * (n - 1)))


def find_truth(prepared: Path, given: str = "") -> Path | None:
    """The raw folder whose planted truth matches ``prepared``: ``given`` (an error if it holds none), else the
    ``raw/kuairand`` folder beside ``prepared``'s parent when its ground truth covers ``prepared``'s rows."""
    from recrl_cli.data.manifest import read_manifest
    from recrl_cli.errors import DataError
    from recrl_cli.sim.truth import row_truth

    if given:
        if not (Path(given) / "ground_truth.json").is_file():
            raise DataError(
                f"{given} has no ground_truth.json: model.check_truth needs `recrl synth kuairand` output"
            )
        return Path(given)
    guess = Path(prepared).parent.parent / "raw" / "kuairand"
    if not (guess / "ground_truth.json").is_file():
        return None
    try:  # the same ids and times as the prepared rows, or it is some other synthetic set
        row_truth(
            guess, prepared, torch.tensor([0, int(read_manifest(prepared)["tables"]["rows"]["rows"]) - 1])
        )
    except DataError:
        return None
    return guess


def check_world(model: UserResponseModel, data: KuaiRandData, *, truth_dir: Path | None = None,
                steps: int = 100, env_cfg: EnvConfig | None = None, seed: int = 0,
                ranker: UserResponseModel | None = None, ranker_name: str = "") -> WorldCheck:  # fmt: skip
    """Run the whole check (see the module docstring); ``truth_dir`` = the raw folder of a synthetic set;
    ``ranker`` = the MTL ranker the fusion rows fuse (None: the simulator ranks for itself), ``ranker_name``
    how the tables name it."""
    model.eval()
    rows = torch.cat([data.splits["val"], data.splits["test"]])
    truth = interaction = None
    if truth_dir is not None:
        from recrl_cli.sim.truth import interaction_share, load_planted_truth, row_truth

        truth = row_truth(truth_dir, data.directory, rows)
        planted = load_planted_truth(truth_dir, data.directory)
        users = first_rows(data)
        grid = user_logit_grid(model, data, users)
        interaction = interaction_share(grid, planted.click_logit(data.rows.user[users]))
    fit = fit_metrics(model, data, truth, rows)
    env_cfg = env_cfg or EnvConfig()
    table = headroom(model, data, env_cfg, steps, seed)
    fusion, note = None, FUSION_SKIPPED
    if ranker is not None and not ranker.has_play_time:
        note = "fusion rows skipped: the ranker has no play-time head (its model.play_time_edges is empty)"
    elif model.has_play_time:
        fusion, note = fusion_headroom(model, data, env_cfg, steps, seed, ranker=ranker), ""
    check = WorldCheck(**fit, headroom=table, item_cosine=item_cosine(model), interaction=interaction,
                       fusion=fusion, fusion_note=note,
                       fusion_ranker=ranker_name if ranker is not None else "")  # fmt: skip
    check.warnings = verdict(check)
    return check


def verdict(check: WorldCheck) -> list[str]:
    """One line per problem; empty when the world can support personalised comparisons."""
    out = []
    gap = check.popular_gap
    if not gap <= POPULAR_LIMIT:  # NaN (no oracle − random gap) is flagged too
        out.append(
            f"the best constant slate reaches {gap:.0%} of the oracle − random gap (limit {POPULAR_LIMIT:.0%}): "
            "this world cannot tell a personalised policy from a popularity list"
        )
    if check.fusion is not None:
        out += fusion_verdict(check.fusion, self_ranked=not check.fusion_ranker)
    off = []
    for b in BEHAVIOURS:
        if check.positives[b] < MIN_POSITIVES:
            continue
        ratio = check.predicted_rate[b] / max(check.observed_rate[b], 1e-12)
        if not 1 / RATE_LIMIT <= ratio <= RATE_LIMIT:
            off.append(f"{b} ×{ratio:.2f}")
    if off:
        out.append(
            f"predicted rates off by more than {RATE_LIMIT:g}× ({', '.join(off)}): rewards that weigh these "
            "behaviours are invented by the simulator"
        )
    return out


def fusion_reading(table: dict[str, dict[str, float]]) -> tuple[str, str]:
    """(figure, ceiling) the fusion verdict reads: the expected reward per request when every row has it (paired
    on the same requests, no sampling noise; else the realised ``avg_reward``), and ``best_fusion`` when there
    (what fusion weights of the ranker's targets reach; else ``per_user``, a check logged before it existed)."""
    key = "expected_reward" if all("expected_reward" in v for v in table.values()) else "avg_reward"
    return key, ("best_fusion" if "best_fusion" in table else "per_user")


def fusion_verdict(table: dict[str, dict[str, float]], self_ranked: bool = False) -> list[str]:
    """The fusion rows' warnings (at most one): the ceiling of :func:`fusion_reading` not above random fusion;
    less than ``FUSION_MIN_GAIN`` above the better of random and fixed fusion (issue 16's "per-user best fusion
    at least 5 % above ES"); or the fixed fusion at more than ``POPULAR_LIMIT`` of the ceiling − random gap.
    ``self_ranked``: the rows fused the simulator's own targets; a warning then says what to check instead."""
    out = _fusion_problem(table)
    if out and self_ranked:
        out[0] += (" (the simulator ranked for itself, which leaves fusion no room by construction; check the "
                   "ranker the fusion runs use: `recrl check simulator RUN --ranker RUN2`)")  # fmt: skip
    return out


def _fusion_problem(table: dict[str, dict[str, float]]) -> list[str]:
    key, ceiling = fusion_reading(table)
    name = calibration.LABELS[ceiling]
    lo, hi, fixed_v = table["random"][key], table[ceiling][key], table["fixed"][key]
    fixed = gap_fraction(table, key, "fixed", ceiling=ceiling)
    if fixed != fixed:  # NaN: the ceiling does not beat random fusion
        return [f"{name} ({hi:.4f} per request) does not beat random fusion ({lo:.4f}): this world cannot tell a "
                "personalised fusion policy from a fixed one"]  # fmt: skip
    floor = max(lo, fixed_v)
    gain = hi / floor - 1.0 if floor > 0 else float("nan")
    if not gain >= FUSION_MIN_GAIN:
        return [f"the {name} is only {gain:+.1%} per request above the better of random and fixed fusion (least "
                f"{FUSION_MIN_GAIN:.0%}): fusion policies cannot differ by enough to compare"]  # fmt: skip
    if fixed > POPULAR_LIMIT:
        return [f"the best fixed fusion reaches {fixed:.0%} of the {name} − random fusion gap per request (limit "
                f"{POPULAR_LIMIT:.0%}): this world cannot tell a personalised fusion policy from a fixed one"]  # fmt: skip
    return []
