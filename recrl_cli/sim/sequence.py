"""One causal pass per user sequence: how the response model is trained and read (the default; KuaiSim's
per-row copied window is the ``per_row_window`` switch).

Training cuts each user's train rows into **blocks** of at most L = H consecutive rows. Token t of a block is
the row just before target t (its item and its 7 logged labels), and a user's very first row gets the padding
item with no feedback as a start token instead. The transformer's output at position t has then read exactly
the rows before target t that lie in the block (and the one before it), so every row of a block is scored from
one pass: B·L rows cost one B × L encoding instead of B·L encodings of an H-row window.

Reading the model later (the env, scoring held-out rows) starts from a left-padded window [B, H'] of the last
rows; :func:`align_windows` lays it out as training did: a start token, then the rows, when the window is not
full; the H' rows alone when it is; and returns the position to read.

Shapes: S train rows, nb blocks, L block length, B windows, H' window length, d encoding width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_cli.data.kuairand_tensors import RowTable


@dataclass(frozen=True)
class Blocks:
    """Blocks of consecutive rows of one user: ``start`` [nb] first row index, ``length`` [nb] rows (<= L)."""

    start: torch.Tensor
    length: torch.Tensor
    block_length: int

    def __len__(self) -> int:
        return int(self.start.shape[0])


def make_blocks(table: RowTable, rows: torch.Tensor, block_length: int) -> Blocks:
    """Cut ascending row indices ``rows`` [S] into runs of one user's consecutive table rows, each cut into
    blocks of at most ``block_length`` rows. Vectorised: no loop over users."""
    if len(rows) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=rows.device)
        return Blocks(empty, empty, block_length)
    user = table.user[rows]
    brk = torch.ones_like(rows, dtype=torch.bool)
    brk[1:] = (user[1:] != user[:-1]) | (rows[1:] != rows[:-1] + 1)
    idx = torch.arange(len(rows), device=rows.device)
    run_start = torch.where(brk, idx, torch.zeros_like(idx)).cummax(0).values
    new = brk | ((idx - run_start) % block_length == 0)
    first = idx[new]
    length = torch.diff(first, append=torch.tensor([len(rows)], device=rows.device))
    return Blocks(rows[first], length, block_length)


@dataclass(frozen=True)
class BlockBatch:
    """Model inputs of nb blocks: user [nb]; tok_items [nb, L]; tok_feedback [nb, L, 7]; targets [nb, L];
    labels [nb, L, 7] float; valid [nb, L] (False right of a short block's end); play_seconds [nb, L]."""

    user: torch.Tensor
    tok_items: torch.Tensor
    tok_feedback: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor
    play_seconds: torch.Tensor


def block_batch(table: RowTable, start: torch.Tensor, length: torch.Tensor, block_length: int) -> BlockBatch:
    """Gather the inputs of blocks (``start`` [nb], ``length`` [nb]) in a few tensor ops."""
    j = torch.arange(block_length, device=start.device)
    valid = j[None, :] < length[:, None]
    target = torch.where(valid, start[:, None] + j, start[:, None])  # padding positions repeat the first row
    bos = (j[None, :] == 0) & (table.user_pos[start] == 0)[:, None]  # the user's first row: a start token
    prev = (target - 1).clamp(min=0)
    real = valid & ~bos
    return BlockBatch(
        user=table.user[start], tok_items=torch.where(real, table.item[prev], torch.zeros_like(prev)),
        tok_feedback=table.labels[prev].float() * real[..., None], targets=table.item[target],
        labels=table.labels[target].float(), valid=valid, play_seconds=table.play_seconds[target],
    )  # fmt: skip


def align_windows(
    items: torch.Tensor, feedback: torch.Tensor, mask: torch.Tensor, start: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded windows -> the layout of a training block, and where to read the state.

    items [B, H', d], feedback [B, H', 7], mask [B, H'] (True on the n real rows, the last n slots), start [d]
    (the padding item's encoding) -> (items [B, H', d], feedback [B, H', 7], read [B]). A window with n < H'
    rows becomes [start token, rows..., anything] and is read at position n; a full one is read at H' - 1.
    Whatever the padding slots hold is never read.
    """
    h = mask.shape[1]
    n = mask.sum(1)
    full = n >= h
    offset = torch.where(full, torch.zeros_like(n), h - n - 1)  # the padding slot before the first row
    src = (offset[:, None] + torch.arange(h, device=mask.device)).clamp(max=h - 1)  # [B, H']
    real = mask.gather(1, src)  # the start token (a padding slot) gets no feedback
    out_items = items.gather(1, src[..., None].expand(-1, -1, items.shape[-1]))
    out_items = torch.where(real[..., None], out_items, start)  # the start token, and right of the rows
    out_feedback = feedback.gather(1, src[..., None].expand(-1, -1, feedback.shape[-1])) * real[..., None]
    read = torch.where(full, torch.full_like(n, h - 1), n)
    return out_items, out_feedback, read
