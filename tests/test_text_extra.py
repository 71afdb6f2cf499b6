"""Text item encoder pieces that need no ``transformers``: the missing-extra error and the synthetic text."""

from __future__ import annotations

import sys

import numpy as np

from recrl_cli.text.synth_text import FILLER_WORDS, LEVEL_WORDS, quality_texts


def test_missing_extra_through_the_cli(cli, cli_dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    (tmp_path / "model").mkdir()
    res = cli("train", "mmoe", "--data", cli_dataset.prepared, "--item-encoder", "text", "--text-model",
              tmp_path / "model", "--device", "cpu", "--epochs", 1, "--max-steps", 1,
              "--tracking-uri", f"sqlite:///{tmp_path / 'db'}", "--runs-dir", tmp_path / "r")  # fmt: skip
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.strip()]
    assert "Traceback" not in res.output
    assert any(line.startswith("error:") and "`text` extra" in line for line in errors), res.output
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_text_without_model_is_a_config_error(cli, cli_dataset, tmp_path):
    res = cli("train", "mmoe", "--data", cli_dataset.prepared, "--item-encoder", "text", "--dry-run")
    assert res.exit_code == 1
    assert "needs --text-model" in res.output and "Traceback" not in res.output


def test_quality_texts_carry_the_planted_signal():
    rng = np.random.default_rng(0)
    quality = rng.normal(size=2000)
    texts = quality_texts(quality, seed=1, words=6, signal=0.5)
    assert texts == quality_texts(quality, seed=1, words=6, signal=0.5)  # deterministic for a seed
    assert texts != quality_texts(quality, seed=2, words=6, signal=0.5)
    top, bottom = set(LEVEL_WORDS[-1]), set(LEVEL_WORDS[0])
    hi = np.argsort(quality)[-400:]  # the top quintile
    lo = np.argsort(quality)[:400]
    words_hi = [w for i in hi for w in texts[i].split()]
    words_lo = [w for i in lo for w in texts[i].split()]
    # Half the words of a top item are its level's words (signal 0.5); none are another level's.
    share = np.mean([w in top for w in words_hi])
    assert 0.45 < share < 0.55
    assert not any(w in bottom for w in words_hi) and not any(w in top for w in words_lo)
    assert all(w in set(FILLER_WORDS) | top for w in words_hi)


def test_require_transformers_without_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    import pytest

    from recrl_cli.errors import ConfigError
    from recrl_cli.text.backend import MISSING_EXTRA, require_transformers

    with pytest.raises(ConfigError) as info:
        require_transformers()
    assert str(info.value) == MISSING_EXTRA and "\n" not in MISSING_EXTRA


def test_synth_item_text_adds_a_file_and_changes_no_other(cli, tmp_path):
    plain = cli("synth", "retailrocket", "--events", 500, "--seed", 4, "--out", tmp_path / "plain")
    text = cli(
        "synth", "retailrocket", "--events", 500, "--seed", 4, "--out", tmp_path / "text", "--item-text"
    )
    assert plain.exit_code == 0 and text.exit_code == 0, text.output
    names = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert sorted(p.name for p in (tmp_path / "text").iterdir()) == sorted([*names, "item_text.csv"])
    for name in names:  # the text has its own random stream: every other file is byte-identical
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "text" / name).read_bytes(), name
    import polars as pl

    items = pl.read_csv(tmp_path / "text" / "item_text.csv")
    events = pl.read_csv(tmp_path / "text" / "events.csv")
    assert set(events["itemid"].to_list()) <= set(items["itemid"].to_list())
    assert items["text"].str.split(" ").list.len().unique().to_list() == [6]
