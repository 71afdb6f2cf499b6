"""Exact mid-run resume of ``recrl train hac|td3|a2c``: Ctrl-C during the interact stage, then ``--resume``, ends
with exactly the metrics of an uninterrupted run of the same seed (the checkpoint holds the replay buffer, the
env's users and generators, not only the agent); and the buffer and env state round trips on their own."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mlflow import MlflowClient
from test_agents import filled_buffer, make_env, small
from test_cli import ctrl_c_at, ok, run_id_of
from test_cli_agents import TINY_AGENT, tiny_simulator

from recrl_cli.agents import make_agent
from recrl_cli.agents.buffer import ReplayBuffer


def test_buffer_and_env_state_round_trip_continue_identically():
    env = make_env()
    agent = make_agent("hac", env, small("hac"), seed=0)
    buf = filled_buffer(env, agent, steps=5)
    saved_buf, saved_env = buf.state_dict(), env.state_dict()
    action = torch.randint(env.num_items, (env.batch, env.slate), generator=torch.Generator().manual_seed(0))
    first = env.step(action)
    sample = buf.sample(32, torch.Generator().manual_seed(4))

    other_env, other_buf = make_env(seed=99), ReplayBuffer(64)
    other_buf.load_state_dict(saved_buf)
    other_env.load_state_dict(saved_env)
    assert len(other_buf) == len(buf) and other_buf.pointer == buf.pointer
    again = other_env.step(action)
    assert torch.equal(first.responses, again.responses) and torch.equal(first.done, again.done)
    assert torch.equal(
        env.observation().items, other_env.observation().items
    )  # same fresh users after leaving
    copy = other_buf.sample(32, torch.Generator().manual_seed(4))
    assert torch.equal(sample.obs.items, copy.obs.items) and torch.equal(sample.hyper, copy.hyper)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(32).load_state_dict(saved_buf)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    return tiny_simulator(tmp_path_factory.mktemp("kr_resume"))


# Tiny models: one thread is faster and keeps the suite from oversubscribing 2 cores (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def final_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """Every metric's last value except wall-clock timings."""
    metrics = client.get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if not k.startswith("time/") and "seconds" not in k}


@pytest.mark.parametrize("algo", ["hac", "a2c"])
def test_resume_after_ctrl_c_ends_with_the_metrics_of_an_uninterrupted_run(
    algo,
    cli,
    simulator,
    tmp_path,
    monkeypatch,
    mlflow_sqlite_uri,
):
    prepared, sim_dir = simulator
    monkeypatch.chdir(tmp_path)
    args = ["train", algo, "--simulator", sim_dir, "--data", prepared, *TINY_AGENT, "--iterations", 8,
            "--initial-temper", 3, "--eval-steps", 12,
            "--tracking-uri", mlflow_sqlite_uri, "--experiment", "agents/resume"]  # fmt: skip
    whole = ok(cli(*args, "--runs-dir", "whole"))
    client = MlflowClient(mlflow_sqlite_uri)

    with ctrl_c_at(monkeypatch, "train", "interact · iterations", 3):  # mid-stage, after 3 of 8 iterations
        interrupted = cli(*args)
    assert interrupted.exit_code == 130, interrupted.output
    assert "--resume" in interrupted.stdout and "Traceback" not in interrupted.output
    run_dir = next((tmp_path / "runs").iterdir())
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)["algorithm"]
    assert len(saved["loop"]["metrics"]["rows"]) == 3 + 3  # 3 warm-up steps + 3 iterations, not more
    assert saved["loop"]["buffer"]["size"] == 6 * 4  # 6 env steps of B = 4 users

    resumed = ok(cli(*args, "--resume"))
    state = json.loads((run_dir / "run.json").read_text())
    assert run_id_of(resumed) == state["mlflow_run_id"]
    got, want = final_metrics(client, run_id_of(resumed)), final_metrics(client, run_id_of(whole))
    assert got == want  # exactly: evaluation, calibrations, the last training window and the losses
    assert all(math.isfinite(v) for v in got.values()), got  # users left (NaN would compare unequal)
    for key in ("eval/test/agent/total_reward", "eval/train/agent/avg_reward", "eval/train/loss/policy_loss",
                "train/interact/epoch_reward"):  # fmt: skip
        assert key in got, sorted(got)
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        (tmp_path / "whole" / run_dir.name / "metrics.json").read_text()
    )
