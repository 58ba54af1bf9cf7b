"""The config tree: defaults < YAML < CLI, strict keys, types and ranges, round trip, the cluster file."""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import yaml

from activa_ray.config import Config, ConfigError, load_config, read_yaml, rebuild_config, save_config, to_dict
from activa_ray.data.grn import load_network

REPO = Path(__file__).resolve().parents[1]


def test_yaml_overrides_defaults_and_cli_overrides_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {d: 8, n_models: 100}\ntrain: {lr: 0.01}\n")
    cfg = load_config(path, ["data.n_models=1000", "model.beta=0.5", "data.linear.intervention_values=[1.0, 2.0]",
                                "model.intervention_values=[1.0, 2.0]"])
    assert cfg.data.d == 8 and cfg.data.n_models == 1000 and cfg.train.lr == 0.01
    assert cfg.model.beta == 0.5 and cfg.data.linear.intervention_values == [1.0, 2.0]
    assert cfg.data.n_samples == Config().data.n_samples


def test_exponent_numbers_without_a_dot_are_numbers_in_files_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 3e-4}\nmodel: {beta: 1E-2}\n")
    cfg = load_config(path, ["train.weight_decay=1e-5"])
    assert (cfg.train.lr, cfg.model.beta, cfg.train.weight_decay) == (3e-4, 1e-2, 1e-5)
    with pytest.raises(ConfigError, match=r"train\.lr .*expected a number, got 'e-4'"):
        load_config(None, ["train.lr=e-4"])
    with pytest.raises(ConfigError, match=r"data\.d .*expected an integer, got 1000\.0"):
        load_config(None, ["data.d=1e3"])


SERGIO = ["data.kind=sergio", "model.intervention_values=[0.0]", "model.point_mass_interventions=true"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.dd=8"], r"unknown config key data\.dd \(from command line\)"),
        (["data.d=eight"], r"data\.d \(from command line\): expected an integer"),
        (["train.precision=fp8"], r"train\.precision .*not one of"),
        (["model.encoder_layers=3"], r"encoder_layers.*even"),
        (["train.steps"], r"expected key=value"),
        (["data.source=shards"], r"data\.dir"),
        (["train.prior_nll_weight=-0.5"], r"^train\.prior_nll_weight=-0\.5: must be >= 0$"),
        (["train.batch_size=-3"], r"^train\.batch_size=-3: must be >= 1$"),
        (["train.lr=.inf"], r"^train\.lr=inf: must be a finite number > 0$"),
        (["train.steps=0", "eval.permutations=0"], r"^train\.steps=0: must be >= 1; eval\.permutations=0: must be >= 1$"),
        (["train.workers=3"], r"^train\.batch_size=64: must be a multiple of train\.workers=3$"),
        (["model.heads=3"], r"^model\.embed_dim=64: must be divisible by model\.heads=3$"),
        (["data.linear.weight_low=3"], r"^data\.linear\.weight_low=3\.0: must be <= data\.linear\.weight_high=2\.0$"),
        (["data.linear.targets_per_intervention=3"], r"targets_per_intervention=3: must be <= data\.d=2"),
        (["data.d=8", "data.d_range=[2, 20]", "data.linear.targets_per_intervention=3"],
         r"targets_per_intervention=3: must be <= the smallest d of data\.d_range=\[2, 20\]"),
        (SERGIO + ["data.d=8", "data.d_range=[2, 5000]"],
         r"^data\.d_range=\[2, 5000\]: its largest d fails: data\.d=5000: must be in \[1, \d+\] for the ecoli network"),
        (["data.linear.intervention_values=[1.0, 2.0]"],
         r"^model\.intervention_values=\[5\.0\]: must be \[1\.0, 2\.0\] \(data\.linear\.intervention_values\)$"),
        (["model.point_mass_interventions=true"], r"^model\.point_mass_interventions=True: must be False"),
        (SERGIO + ["data.d=5000"], r"^data\.d=5000: must be in \[1, \d+\] for the ecoli network"),
        (SERGIO + ["data.sergio.basal_low=2"], r"^data\.sergio\.basal_low=2\.0: must be <= data\.sergio\.basal_high"),
        (["data.kind=sergio"], r"^model\.intervention_values=\[5\.0\]: must be \[0\.0\] \(the values of data\.kind=sergio\); "
                               r"model\.point_mass_interventions=False: must be True for data\.kind=sergio$"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def numeric_fields(cls: type = Config, prefix: str = "") -> typing.Iterator[tuple[str, type, str, type]]:
    """(key, dataclass, field name, int or float) of every numeric field of the tree, by introspection."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from numeric_fields(hints[f.name], key)
        elif hints[f.name] in (int, float):
            yield key, cls, f.name, hints[f.name]


def out_of_range_values(low: float, high: float, low_open: bool, high_open: bool, tp: type) -> list:
    """Values just outside each finite end of a range (the end itself where it is open), and NaN for floats."""
    step = 1 if tp is int else 0.5
    values = [low if low_open else low - step] if math.isfinite(low) else []
    values += [high if high_open else high + step] if math.isfinite(high) else []
    return values + ([".nan"] if tp is float else [])


NUMERIC_FIELDS = list(numeric_fields())


def test_the_tree_has_numeric_fields_in_every_section():
    sections = {key.rsplit(".", 1)[0] for key, *_ in NUMERIC_FIELDS}
    assert {"data", "data.linear", "data.sergio", "model", "train", "eval"} <= sections


@pytest.mark.parametrize("key, cls, name, tp", NUMERIC_FIELDS, ids=[key for key, *_ in NUMERIC_FIELDS])
def test_every_numeric_field_refuses_values_outside_its_range(key, cls, name, tp):
    """A field added without a range in its class's RANGES, or with an unbounded one, fails here."""
    allowed = getattr(cls, "RANGES", {}).get(name)
    assert allowed is not None, f"{key}: add its allowed range to {cls.__name__}.RANGES"
    values = out_of_range_values(allowed.low, allowed.high, allowed.low_open, allowed.high_open, tp)
    assert len(values) > (tp is float), f"{key}: {cls.__name__}.RANGES allows every number"
    for value in values:
        with pytest.raises(ConfigError, match=rf"(^|; ){re.escape(key)}=[^;]*: must be [^;]*{re.escape(str(allowed))}"):
            load_config(None, [f"{key}={value}"])


def test_a_bad_value_stops_train_at_once_with_one_line_and_no_run_directory(tmp_path):
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), "train.batch_size=-3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: train.batch_size=-3: must be >= 1\n" and done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no runs/ folder: nothing was written
    assert elapsed < 30, f"{elapsed:.1f} s: the config is checked before Ray or torch start"


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


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_loads(path):
    if path.parent.name == "tune":
        from activa_ray.train.tune import load_sweep

        load_sweep(path)
    elif read_yaml(path).get("architecture") == "structure":
        from activa_ray.train.structure import load_structure_run

        load_structure_run(path)
    else:
        load_config(path)


def test_cluster_yaml_is_valid_for_the_ray_cluster_launcher():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(cluster))
    head = cluster["head_start_ray_commands"]
    assert any("--dashboard-host=127.0.0.1" in command for command in head), "dashboard must not be public"
    assert cluster["available_node_types"]["gpu_worker"]["resources"]["GPU"] >= 1


def _imports_of(path: Path, modules: set[str]) -> set[str]:
    """The activa_ray modules `path` imports anywhere (functions too), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        else:  # `from package import submodule` imports the submodule, `from module import name` the module
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                      for a in node.names} & modules
    return found


def test_the_package_has_no_import_cycle():
    """Not even through an import inside a function: each part imports only the parts below it."""
    paths = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (REPO / "activa_ray").rglob("*.py")}
    graph = {module: _imports_of(path, set(paths)) - {module} for module, path in paths.items()}
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        if module in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(module):] + [module]))
        if module not in done:
            for imported in sorted(graph[module]):
                visit(imported, stack + [module])
            done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_workers_rebuild_the_config_without_checking_it_or_loading_gene_networks():
    tree = to_dict(load_config(REPO / "configs" / "paper" / "sergio.yaml"))
    load_network.cache_clear()
    cfg = rebuild_config(tree)
    assert cfg == load_config(REPO / "configs" / "paper" / "sergio.yaml")  # the driver's check parses every network it names
    assert load_network.cache_info().currsize == len(cfg.data.sergio.networks)
    load_network.cache_clear()
    rebuild_config(tree)
    assert load_network.cache_info().currsize == 0  # a worker that never simulates SERGIO never parses a network
    tree["train"]["batch_size"] = -3  # the driver's checks, not the worker's, refuse this
    assert rebuild_config(tree).train.batch_size == -3


def test_a_config_states_only_what_differs_from_its_base(tmp_path):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "root.yaml").write_text("name: root\ndata: {d: 8, n_models: 100}\ntrain: {lr: 0.01}\n")
    (tmp_path / "child.yaml").write_text("base: paper/root.yaml\nname: child\ndata: {n_models: 200}\n")
    (tmp_path / "grandchild.yaml").write_text("base: child.yaml\ntrain: {steps: 7}\n")
    cfg = load_config(tmp_path / "grandchild.yaml", ["data.d=5"])
    assert (cfg.name, cfg.data.d, cfg.data.n_models, cfg.train.lr, cfg.train.steps) == ("child", 5, 200, 0.01, 7)
    save_config(cfg, tmp_path / "resolved.yaml")  # the resolved tree: no base, every value
    assert "base" not in yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert load_config(tmp_path / "resolved.yaml") == cfg
    (tmp_path / "paper" / "root.yaml").write_text("model: {heds: 2}\n")
    with pytest.raises(ConfigError, match=r"model\.heds \(from .*paper/root\.yaml\)"):  # the file that says it
        load_config(tmp_path / "grandchild.yaml")
    (tmp_path / "paper" / "root.yaml").write_text("base: ../grandchild.yaml\n")
    with pytest.raises(ConfigError, match=r"already in its chain of bases"):
        load_config(tmp_path / "grandchild.yaml")
    (tmp_path / "orphan.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"base \(from .*orphan\.yaml\): .*nowhere\.yaml does not exist"):
        load_config(tmp_path / "orphan.yaml")


def test_the_paper_presets_and_recipes_inherit_what_they_share():
    paper, recipes = REPO / "configs" / "paper", REPO / "configs" / "recipes"
    gauss8, beta8 = load_config(paper / "gauss8.yaml"), load_config(paper / "beta8.yaml")
    assert dataclasses.replace(beta8, name="gauss8", data=dataclasses.replace(beta8.data, kind="linear-gauss")) == gauss8
    recipe = load_config(recipes / "gauss8.yaml")
    assert recipe.data == gauss8.data and recipe.model.hidden_dim == 128 and recipe.train.batch_size == 16
    assert load_config(paper / "sergio_ood.yaml").model == load_config(paper / "sergio.yaml").model
