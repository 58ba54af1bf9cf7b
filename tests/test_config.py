"""The config tree: defaults < YAML < CLI, strict keys and types, round trip, the cluster file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from activa_ray.config import Config, ConfigError, load_config, save_config

REPO = Path(__file__).resolve().parents[1]


def test_yaml_overrides_defaults_and_cli_overrides_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {d: 8, n_models: 100}\ntrain: {lr: 0.01}\n")
    cfg = load_config(path, ["data.n_models=1000", "model.beta=0.5", "data.linear.intervention_values=[1.0, 2.0]",
                             "model.intervention_values=[1.0, 2.0]"])
    assert cfg.data.d == 8 and cfg.data.n_models == 1000 and cfg.train.lr == 0.01
    assert cfg.model.beta == 0.5 and cfg.data.linear.intervention_values == [1.0, 2.0]
    assert cfg.data.n_samples == Config().data.n_samples


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.dd=8"], r"unknown config key data\.dd \(from command line\)"),
        (["data.d=eight"], r"data\.d \(from command line\): expected an integer"),
        (["train.precision=fp8"], r"train\.precision .*not one of"),
        (["model.encoder_layers=3"], r"encoder_layers.*even"),
        (["train.steps"], r"expected key=value"),
        (["data.source=shards"], r"data\.dir"),
        (["train.prior_nll_weight=-0.5"], r"train\.prior_nll_weight must be >= 0"),
        (["data.linear.intervention_values=[1.0]"], r"model\.intervention_values \[5\.0\] must equal the data's \[1\.0\]"),
        (["data.kind=sergio"], r"model\.intervention_values \[5\.0\] must equal the data's \[0\.0\]; "
                               r"model\.point_mass_interventions must be true for data\.kind sergio"),
        (["model.point_mass_interventions=true"], r"model\.point_mass_interventions must be false for data\.kind"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {heads: two}\n")
    with pytest.raises(ConfigError, match=r"model\.heads \(from .*bad\.yaml\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["data.d=5", "train.use_gpu=false", "wandb.mode=offline"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    if path.name.startswith("tune"):
        from activa_ray.train.tune import load_sweep

        load_sweep(path)
    else:
        load_config(path)


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(cluster))
    head = cluster["head_start_ray_commands"]
    assert any("--dashboard-host=127.0.0.1" in command for command in head), "dashboard must not be public"
    assert cluster["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1
