"""Hyperparameters shared by every MTL base (defaults = the RMTL reference, ``train/run.py::get_model``)."""

from __future__ import annotations

from dataclasses import dataclass

from recrl_cli.config.fields import param
from recrl_cli.errors import ConfigError
from recrl_cli.text.config import (
    check_text_options,
    item_encoder_field,
    text_max_len_field,
    text_mode_field,
    text_model_field,
)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _positive_dims(name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{name} must be a sequence of positive integers, got {value!r}")
    dims = tuple(value)  # type: ignore[arg-type]
    if not dims and not allow_empty:
        raise ConfigError(f"{name} needs at least one layer width")
    for d in dims:
        _positive_int(f"every width of {name}", d)
    return dims


@dataclass(frozen=True)
class MTLConfig:
    """Network sizes of an MTL base. Validated on construction; lists are normalised to tuples."""

    embed_dim: int = param(128, help="Embedding width D of every categorical field.")
    bottom_dims: tuple[int, ...] = param(
        (512, 256),
        help="Hidden widths of the bottom/expert MLPs (PLE: one extraction level per width).",
    )
    tower_dims: tuple[int, ...] = param(
        (128, 64), help="Hidden widths of each task tower (a final Linear(→1) is always added)."
    )
    dropout: float = param(0.2, help="Dropout after every hidden layer, in [0, 1).")
    expert_num: int = param(
        8,
        help="MoE experts (OMoE/MMoE); PLE uses expert_num/2 shared + expert_num/2 per task (even).",
    )
    history: str = param(
        "mean",
        help="Session-history state: mean or attention pooling of the visitor's earlier items and their labels "
        "(when the prepared data carry a history), or off.",
        choices=("off", "mean", "attention"),
    )
    bias_init: str = param(
        "prior",
        help="Output bias at start: prior = the training log-odds of each task (ESMM's CVR tower: of "
        "rate(task 2)/rate(task 1)), zero = the layer's default init.",
        choices=("prior", "zero"),
    )
    # Item representation (recrl_cli/text): the id table by default, or a language model over item text.
    item_encoder: str = item_encoder_field()
    text_model: str = text_model_field()
    text_mode: str = text_mode_field()
    text_max_len: int = text_max_len_field()

    def __post_init__(self) -> None:
        _positive_int("embed_dim", self.embed_dim)
        # Frozen: normalise through object.__setattr__ so lists given by a caller become immutable tuples.
        object.__setattr__(
            self, "bottom_dims", _positive_dims("bottom_dims", self.bottom_dims, allow_empty=False)
        )
        object.__setattr__(
            self, "tower_dims", _positive_dims("tower_dims", self.tower_dims, allow_empty=True)
        )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.expert_num, bool) or not isinstance(self.expert_num, int) or self.expert_num < 2:
            raise ConfigError(f"expert_num must be an integer >= 2, got {self.expert_num!r}")
        if self.history not in ("off", "mean", "attention"):
            raise ConfigError(f"history must be off, mean or attention, got {self.history!r}")
        if self.bias_init not in ("prior", "zero"):
            raise ConfigError(f"bias_init must be 'prior' or 'zero', got {self.bias_init!r}")
        check_text_options(self)

    @property
    def bottom_dim(self) -> int:
        """Width of the bottom's output, i.e. the towers' input."""
        return self.bottom_dims[-1]


def check_num_tasks(num_tasks: object, model: str, *, exactly: int | None = None) -> int:
    """Validate the task count T a base is built for (ConfigError on a bad value)."""
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise ConfigError(f"{model} needs a positive number of tasks, got {num_tasks!r}")
    if exactly is not None and num_tasks != exactly:
        raise ConfigError(f"{model} needs exactly {exactly} tasks, got {num_tasks}")
    return num_tasks
