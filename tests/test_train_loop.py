"""The plain-torch training step and loop (no Ray): precision, the bf16 attention path, exact resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from activa_ray.config import load_config
from activa_ray.model.activa import Activa
from activa_ray.model.attention import attend
from activa_ray.train.checkpoint import load_checkpoint, save_checkpoint
from activa_ray.train.loop import Replica, run_steps
from activa_ray.train.progress import progress_line
from activa_ray.train.step import (
    LossModule,
    autocast,
    build_optimizer,
    cpu_has_bf16_units,
    resolve_precision,
    streamed_examples,
    to_torch,
    train_step,
)

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(one_thread):
    """Every test here trains tiny models (conftest's one_thread)."""


def test_bf16_cpu_attention_path_matches_fp32_attention():
    g = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(64, 2, 30, 16, generator=g) for _ in range(3))
    reference = attend(query, key, value)  # fp32: scaled_dot_product_attention
    manual = torch.softmax(query @ key.transpose(-1, -2) / 4.0, -1) @ value
    torch.testing.assert_close(reference, manual, rtol=1e-5, atol=1e-5)
    low = attend(query.bfloat16(), key.bfloat16(), value.bfloat16())
    assert low.dtype == torch.bfloat16
    # bf16 keeps 8 bits of mantissa: outputs of unit scale agree to ~1e-2.
    torch.testing.assert_close(low.float(), reference, rtol=0, atol=3e-2)


def test_bf16_autocast_loss_tracks_fp32_and_gradients_stay_fp32():
    cfg = load_config(SMOKE, ["model.embed_dim=32", "model.hidden_dim=64"])
    torch.manual_seed(0)
    model = Activa(cfg.model)
    batch = to_torch(streamed_examples(cfg, 0, 0, 16), torch.device("cpu"))
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    full = model.loss(**batch, generator=generator(), prior_nll_weight=1.0)["loss"]
    with autocast("bf16", torch.device("cpu")):
        half = model.loss(**batch, generator=generator(), prior_nll_weight=1.0)["loss"]
    assert half.dtype == torch.float32  # the likelihood and KL are computed in fp32 outside autocast
    assert abs(half.item() - full.item()) < 0.02 * abs(full.item())
    half.backward()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in model.parameters())


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    expected = "bf16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "fp32"
    assert cpu_has_bf16_units() == (expected == "bf16")
    assert resolve_precision("auto", cpu) == expected


def _replica(cfg, precision):
    torch.manual_seed(cfg.train.seed)
    model = Activa(cfg.model)
    optimizer = build_optimizer(model, cfg)
    return Replica(model, LossModule(model, cfg.train.prior_nll_weight), optimizer, torch.device("cpu"), precision)


def _train(cfg, replica, step, losses):
    def report(at, metrics, checkpoint_now):
        losses[at] = metrics["train/loss"]
        return False

    return run_steps(cfg, replica, step, lambda at: streamed_examples(cfg, 0, at, cfg.train.batch_size), report)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_resumed_from_a_checkpoint_repeats_the_straight_run_bit_for_bit(tmp_path, precision):
    overrides = ["train.steps=8", "train.log_every=2", "train.ckpt_every=4", "train.val_every=8",
                 "train.prior_nll_weight=1.0", "model.dropout=0.1"]
    cfg = load_config(SMOKE, overrides)
    straight = {}
    _train(cfg, _replica(cfg, precision), 0, straight)

    first, resumed = {}, {}
    chunk = _replica(cfg, precision)
    assert _train(replace(cfg, train=replace(cfg.train, stop_at_step=4)), chunk, 0, first) == 4
    save_checkpoint(tmp_path / "ckpt", chunk.model, chunk.optimizer, 4, {"model": vars(cfg.model)})
    fresh = _replica(cfg, precision)
    state = load_checkpoint(tmp_path / "ckpt", fresh.model, fresh.optimizer, vars(cfg.model))
    assert _train(cfg, fresh, state["step"], resumed) == 8
    assert {**first, **resumed} == straight  # exact: every draw is a function of (seed, rank, step)


def test_training_in_bf16_lowers_the_loss_without_nonfinite_gradients():
    cfg = load_config(SMOKE, ["train.lr=0.003"])
    replica = _replica(cfg, "bf16")
    losses, nonfinite = [], 0
    for step in range(30):
        batch = to_torch(streamed_examples(cfg, 0, step, 16), replica.device)
        result = train_step(replica.loss_module, replica.model, replica.optimizer, batch, 0.003, "bf16", 1.0)
        losses.append(float(result.terms["loss"]))
        nonfinite += result.nonfinite_grads
    assert nonfinite == 0
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_progress_line_reads_like_a_sentence():
    record = {"step": 500, "train/examples_per_s": 612.4, "train/steps_per_s": 2.0, "train/loss": 81.23,
              "val/step": 500, "val/activa_mmd": 0.2712, "val/baseline_mmd": 0.6071}
    assert progress_line(record, 2000) == (
        "step 500/2000  612 ex/s  ETA 12m30s  loss 81.23  | val MMD ACTIVA 0.271 vs baseline 0.607")
    assert "val MMD" not in progress_line({**record, "step": 550}, 2000)


def test_training_without_ray_resumes_where_it_stopped_and_exports(tmp_path):
    """train/local.py: the RUN_DIR of a Ray run (config.yaml, metrics.jsonl, checkpoints/step_*, export/)."""
    from activa_ray.model.io import load_model
    from activa_ray.train.local import train_local

    tiny = ["wandb.mode=disabled", "train.steps=8", "train.log_every=2", "train.val_every=4", "train.ckpt_every=2",
            "train.keep_ckpts=2", "train.val_models=4", "train.precision=fp32"]
    straight = train_local(load_config(SMOKE, tiny), tmp_path / "straight", progress=None)
    train_local(load_config(SMOKE, [*tiny, "train.stop_at_step=4"]), tmp_path / "stopped", progress=None)
    resumed = train_local(load_config(SMOKE, tiny), tmp_path / "stopped", progress=None)
    losses = [[json.loads(line)["train/loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (straight["run_dir"], resumed["run_dir"])]
    assert losses[0] == losses[1] and len(losses[0]) == 4  # steps 2, 4 | 6, 8: the same numbers either way
    assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").glob("step_*")) == [
        "step_00000006", "step_00000008"]
    model, meta = load_model(resumed["export"])
    assert resumed["step"] == meta["step"] == 8 and meta["examples_seen_total"] == 8 * 16
    reference, _ = load_model(straight["export"])
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
