"""Weights & Biases for training (rank 0) and the evaluate job: online only with a key (or
wandb.mode=online), never a prompt or a hang."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from activa_ray.config import Config, WandbConfig, to_dict


# Seconds between writes of a run's buffered records to its run file (W&B's default: 15).
FLUSH_INTERVAL_S = 0.1


def resolve_mode(cfg: WandbConfig) -> str:
    """auto -> online when WANDB_API_KEY is set, else offline (files under the run directory)."""
    if cfg.mode == "auto":
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return cfg.mode


def init_run(cfg: Config, run_dir: str | os.PathLike, job_type: str = "train", group: str | None = None):
    """Start (or resume, same id) the run of `run_dir`; None when W&B is disabled.

    The run id is kept in RUN_DIR/wandb_run_id so that a resumed training continues the same run.
    Only the resolved config is logged; the API key is never written anywhere.
    """
    mode = resolve_mode(cfg.wandb)
    if mode == "disabled":
        return None
    import wandb

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(6)
    id_file.write_text(run_id)
    # No console capture (it would re-log Ray's output) and no git probing; offline never
    # reaches for the network, online without a key is refused by resolve_mode's caller.
    # The run's records are written by W&B's service process (wandb-core), a child of this one, which
    # buffers them and by default writes the run file only every 15 s or at finish(). A Ray Train worker
    # can be killed without warning: when Tune stops a trial (ASHA), the trial's actors are force-killed
    # with their child processes, wandb-core included, and finish() never runs. Writing the buffer out
    # every FLUSH_INTERVAL_S keeps what was logged (a plain write, no fsync).
    settings = wandb.Settings(console="off", disable_git=True, silent=True, x_disable_stats=True,
                              x_transaction_log_flush_interval=FLUSH_INTERVAL_S)
    return wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity or None,
        group=group or cfg.wandb.group or None,
        name=f"{cfg.name}-{run_dir.name}",
        id=run_id,
        resume="allow",
        dir=str(run_dir),
        mode=mode,
        job_type=job_type,
        config=to_dict(cfg),
        settings=settings,
    )


def log_images(cfg: Config, run_dir: str | os.PathLike, paths: list[Path], section: str) -> None:
    """Attach PNGs to the run of `run_dir` (the same id, resumed) as `section/<file stem>`, when W&B is on."""
    run = init_run(cfg, run_dir)
    if run is None:
        return
    import wandb

    run.log({f"{section}/{path.stem}": wandb.Image(str(path)) for path in paths})
    run.finish()
