"""An MTL base trained on KuaiRand as the fusion env's ranker (``recrl train unifiedrl --ranker runs/mmoe-<key>``).

The env ranks candidates by the k = 5 fusion targets of :func:`recrl_cli.mtf.fusion.fusion_targets`, computed from 7
behaviour probabilities and a play-time distribution given a click. A simulator run has all of them; an MTL base
trained on KuaiRand (``recrl train mmoe --data <kuairand dir>``, :mod:`recrl_cli.data.kuairand_mtl`) predicts two:
P(click) and P(long view). :class:`MTLRanker` scores every (user, candidate) pair with the base on the same feature
row the base was trained on (video and user ids and features, first tag, the training split's most common tab, the
user's 10 most recent history items with their click / long-view codes from the env's feedback) and fills the rest
from the training data, the same for every candidate: the other 5 behaviours at their train rates, the play time
given a click as the train histogram over the simulator's play bins. So valid consumption, watch time and long view
follow the base's two predictions; interaction and not-hate are constants (their fusion weights cannot reorder a
slate). The retriever reads the base's item embedding rows; the learners' state is [mean history embedding,
click-weighted mean history embedding, user embedding] ([B, 3D]).

Shapes: B users, H history, C candidates, D the base's embedding width, N items, M + 1 play bins.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from recrl_cli.data.kuairand_mtl import MTL_HISTORY, MTL_TASKS, history_codes, tab_ids
from recrl_cli.data.prepare.kuairand import BEHAVIOURS
from recrl_cli.errors import ConfigError
from recrl_cli.nets.layers import FeatureEmbedding
from recrl_cli.sim.play_time import play_bins

MTL_RANKER_FAMILIES = ("mtl base", "rl-mtl")


def is_mtl_model(saved: dict[str, Any]) -> bool:
    """Whether a checked ``model.pt`` (:func:`recrl_cli.algorithms.saved.read_saved_model`) is an MTL base or RMTL."""
    from recrl_cli.algorithms.catalog import ENTRIES

    entry = ENTRIES.get(str(saved.get("algo")))
    return entry is not None and entry.family in MTL_RANKER_FAMILIES


def read_ranker(source: str, option: str = "--ranker") -> dict[str, Any]:
    """The checked saved model of ``--ranker``: a simulator run, or an MTL base / RMTL run trained on KuaiRand.
    Returns the whole saved dict (``algo``, ``exported``, ``config``, ``dataset_fingerprint``)."""
    from pathlib import Path

    from recrl_cli.agents.algorithm import read_simulator
    from recrl_cli.algorithms.saved import read_saved_model

    path = Path(source)
    path = path / "model.pt" if path.is_dir() else path
    if path.is_file():
        saved = read_saved_model(path)
        if is_mtl_model(saved):
            dataset = (saved.get("config") or {}).get("data", {}).get("dataset")
            if dataset != "kuairand":
                raise ConfigError(f"{option} {source} is a {saved['algo']} model trained on {dataset} data; a "
                                  "ranker must be trained on the prepared KuaiRand data the fusion runs on")  # fmt: skip
            return saved
    exported = read_simulator(source, option)  # the one-line errors of a missing or wrong kind of file
    return {
        "algo": "simulator",
        "exported": exported,
        "dataset_fingerprint": exported.get("dataset_fingerprint"),
    }


def _item_embedding(model: nn.Module) -> FeatureEmbedding:
    """The base's (first) feature embedding: field 0 is the item, field 1 the user (the KuaiRand view's order)."""
    found = next((m for m in model.modules() if isinstance(m, FeatureEmbedding)), None)
    if found is None or type(found) is not FeatureEmbedding:
        raise ConfigError("an MTL ranker needs a base with an id feature embedding (not --item-encoder text)")
    return found


class MTLRanker(nn.Module):
    """The fusion env's ranker interface (``item_table``, ``user_state``, ``behaviour_vectors``, ``play_edges``,
    ``has_play_time``, ``num_items``, ``state_dim``, ``cfg.history_length``) over an MTL base; the env asks it for
    candidate outputs by id (:meth:`candidate_outputs`, ``scores_candidates``) instead of by item encoding.

    Args:
        model: the base, ids [B, F + 2H] -> logits [B, 2] (is_click, long_view).
        users, items: the KuaiRand feature tables (:class:`~recrl_cli.data.kuairand_tensors.FeatureTable`).
        rates: FloatTensor [7], the train rate of each behaviour.
        play_logits: FloatTensor [M + 1], log of the train play-time histogram given a click.
        play_edges: FloatTensor [M], the simulator's play bins (seconds).
        tab: the tab id every candidate gets (the training split's most common).
    """

    scores_candidates = True
    has_play_time = True

    def __init__(self, model: nn.Module, users: Any, items: Any, rates: torch.Tensor, play_logits: torch.Tensor,
                 play_edges: torch.Tensor, tab: int, history: int = MTL_HISTORY) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.embedding = _item_embedding(model)
        self.cfg = SimpleNamespace(history_length=history)
        self.tab = int(tab)
        self.register_buffer("user_features", users.ids.clone())
        self.register_buffer("item_features", items.ids.clone())
        tags = (
            items.tags[:, :1]
            if items.tags is not None
            else torch.zeros(items.ids.shape[0], 1, dtype=torch.long)
        )
        self.register_buffer("item_tags", tags.clone())
        self.register_buffer("rates", rates.float().clone())
        self.register_buffer("play_prior", play_logits.float().clone())
        self.register_buffer("play_edges", play_edges.float().clone())
        self.task_index = [BEHAVIOURS.index(t) for t in MTL_TASKS]

    @property
    def num_items(self) -> int:
        return int(self.item_features.shape[0]) - 1

    @property
    def state_dim(self) -> int:
        return 3 * self.embedding.embed_dim

    def item_table(self) -> torch.Tensor:
        """[N + 1, D]: the base's item embedding rows (row 0 = the padding / unknown id)."""
        start = int(self.embedding.offsets[0])
        return self.embedding.weight[start : start + self.num_items + 1].detach()

    def user_state(self, user: torch.Tensor, hist_enc: torch.Tensor, feedback: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """[B, 3D]: mean history embedding, click-weighted mean history embedding, user embedding.

        user [B], hist_enc [B, H, D] (:meth:`item_table` rows), feedback [B, H, 7], mask [B, H]."""
        m = mask.float()
        mean = (hist_enc * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        w = m * feedback[..., 0]
        clicked = (hist_enc * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1.0)
        u = self.embedding.weight[int(self.embedding.offsets[1]) + user]  # [B, D]
        return torch.cat([mean, clicked, u], dim=-1)

    def behaviour_vectors(self, state: torch.Tensor) -> torch.Tensor:
        return state  # not read: the env calls candidate_outputs for this ranker

    def features(self, user: torch.Tensor, items: torch.Tensor, feedback: torch.Tensor, mask: torch.Tensor,
                 candidates: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The base's input rows of every (user, candidate): LongTensor [B·C, F + 2H].

        user [B], items [B, H'] / feedback [B, H', 7] / mask [B, H'] (oldest first; the last H are used),
        candidates [B, C] (item indices 0..N-1)."""
        b, c = candidates.shape
        h = self.cfg.history_length
        item = (candidates + 1).reshape(-1)  # [B·C] encoded video ids
        who = user[:, None].expand(b, c).reshape(-1)
        hist_items = torch.where(mask[:, -h:], items[:, -h:], torch.zeros_like(items[:, -h:]))
        codes = history_codes(feedback[:, -h:], mask[:, -h:], self.task_index)
        if hist_items.shape[1] < h:  # a shorter env history: left-pad to the H the base was trained with
            pad = h - hist_items.shape[1]
            hist_items = torch.nn.functional.pad(hist_items, (pad, 0))
            codes = torch.nn.functional.pad(codes, (pad, 0))
        parts = [item[:, None], who[:, None], self.user_features[who], self.item_features[item],
                 self.item_tags[item], torch.full_like(item, self.tab)[:, None],
                 hist_items.repeat_interleave(c, 0), codes.repeat_interleave(c, 0)]  # fmt: skip
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def candidate_outputs(self, user: torch.Tensor, items: torch.Tensor, feedback: torch.Tensor,
                          mask: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(probs [B, C, 7], play logits [B, C, M + 1]) of the candidates: the base's P(click), P(long view), the
        train rates for the other behaviours and the train play-time histogram (see the module docstring)."""
        b, c = candidates.shape
        p = torch.sigmoid(self.model(self.features(user, items, feedback, mask, candidates))).view(b, c, -1)
        probs = self.rates.expand(b, c, -1).clone()
        probs[..., self.task_index] = p
        return probs, self.play_prior.expand(b, c, -1)


def load_mtl_ranker(
    saved: dict[str, Any], data: Any, play_edges: torch.Tensor, device: torch.device
) -> MTLRanker:
    """Rebuild a saved MTL base / RMTL run (trained on the KuaiRand view) as an :class:`MTLRanker` for ``data``
    (a :class:`~recrl_cli.sim.data.KuaiRandData`), with the simulator's ``play_edges`` [M]."""
    from recrl_cli.config.loading import build_section
    from recrl_cli.nets.mtl import build_base
    from recrl_cli.nets.mtl.config import MTLConfig

    exported = saved["exported"]
    if list(exported.get("tasks", ())) != list(MTL_TASKS):
        raise ConfigError(
            f"an MTL ranker must predict {list(MTL_TASKS)}, this one predicts {exported.get('tasks')}"
        )
    # RMTL exports its base like a plain base run (base name, MTLConfig fields, weights): one path for both.
    base, cfg = exported["base"], build_section(MTLConfig, exported["model_config"], "model")
    model = build_base(base, exported["cardinalities"], len(MTL_TASKS), cfg)
    model.load_state_dict(exported["weights"])
    train = data.splits["train"]
    rates = data.rows.labels[train].float().mean(0)
    clicked = train[(data.rows.labels[train, 0] > 0) & ~torch.isnan(data.rows.play_seconds[train])]
    counts = torch.bincount(
        play_bins(data.rows.play_seconds[clicked], play_edges.cpu()), minlength=len(play_edges) + 1
    )
    play_logits = torch.log(counts.float() + 1.0)
    tab = _common_tab(data)
    ranker = MTLRanker(model, data.users, data.items, rates, play_logits, play_edges.cpu(), tab)
    return ranker.to(device).eval()


def _common_tab(data: Any) -> int:
    """The tab id (:func:`recrl_cli.data.kuairand_mtl.tab_ids`) of most training rows (0 without a tab column)."""
    import pyarrow.parquet as pq

    path = data.directory / data.manifest["tables"]["rows"]["file"]
    if "tab" not in pq.read_schema(path).names:
        return 0
    ids = tab_ids(pq.read_table(path, columns=["tab"]).column("tab").to_numpy(zero_copy_only=False))
    return int(torch.bincount(ids[data.splits["train"].cpu()]).argmax())
