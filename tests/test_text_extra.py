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
