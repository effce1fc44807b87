"""cli.py: help output, configuration errors as exit code 2, and `show` on an empty store.

Every call goes through ``main(argv)`` in-process; nothing here trains.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mutask.contract import ExitCode
from mutask.trainer.cli import build_parser, config_from_args, main
from mutask.trainer.config import BUDGETS, BudgetConfig, IntroduceConfig
from mutask.trainer.flags import bootstrap_config

SUBCOMMANDS = [
    "demo",
    "introduce",
    "bootstrap",
    "show",
    "evaluate",
    "verify",
    "export",
    "gc",
    "operator",
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["--help"], capsys)
    assert out.startswith("usage: mutask")
    assert all(cmd in out for cmd in SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"usage: mutask {command}" in _help([command, "--help"], capsys)


def test_a_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "usage: mutask" in capsys.readouterr().err


def _bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == ExitCode.BAD_INPUT == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_bad_task_name_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _bad_input(["introduce", "--store", str(tmp_path), "--task", "Bad_Name"], capsys)
    assert err.startswith("mutask: error: task='Bad_Name'")
    assert not list(tmp_path.iterdir())  # rejected before touching the store


def test_missing_task_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--task" in _bad_input(["introduce", "--store", str(tmp_path)], capsys)


def test_bad_flag_value_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["introduce", "--store", str(tmp_path), "--task", "digits", "--size-scale", "0"]
    assert "search.size_scale=0.0" in _bad_input(argv, capsys)


def test_bad_labels_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["introduce", "--store", str(tmp_path), "--task", "digits", "--labels", "1,x"]
    assert "--labels='1,x'" in _bad_input(argv, capsys)


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.json"
    err = _bad_input(["introduce", "--config", str(missing)], capsys)
    assert "--config=" in err and "missing.json" in err and "cannot read" in err


def test_config_file_with_an_unknown_field_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "intro.json"
    config.write_text(json.dumps({"task": "digits", "budget": {"generationz": 3}}))
    err = _bad_input(["introduce", "--config", str(config)], capsys)
    assert "budget.generationz=3: unknown field" in err


def test_config_file_wins_over_flags_except_store_and_seed(tmp_path: Path) -> None:
    config = tmp_path / "intro.json"
    config.write_text(IntroduceConfig("digits", store="from-file", seed=1).to_json())
    argv = ["introduce", "--config", str(config), "--task", "other", "--generations", "9"]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.task, cfg.budget.generations, cfg.store, cfg.seed) == ("digits", 2, "from-file", 1)
    cfg = config_from_args(build_parser().parse_args([*argv, "--store", "s", "--seed", "7"]))
    assert (cfg.store, cfg.seed) == ("s", 7)
    assert (cfg.device, cfg.workers) == ("auto", None)
    cfg = config_from_args(build_parser().parse_args([*argv, "--device", "cpu", "--workers", "3"]))
    assert (cfg.device, cfg.workers) == ("cpu", 3)


def test_flags_override_a_config_file_with_any_value_including_zero(tmp_path: Path) -> None:
    """The Job passes --config and --metrics-port; --seed 0 must beat a file's seed."""
    config = tmp_path / "intro.json"
    config.write_text(
        IntroduceConfig("digits", seed=3, device="cuda", metrics_port=1, workers=4).to_json()
    )
    argv = ["introduce", "--config", str(config)]
    cfg = config_from_args(build_parser().parse_args(argv))
    assert (cfg.seed, cfg.device, cfg.metrics_port, cfg.workers) == (3, "cuda", 1, 4)
    flags = ["--seed", "0", "--device", "cpu", "--metrics-port", "0", "--workers", "1"]
    cfg = config_from_args(build_parser().parse_args([*argv, *flags, "--precision", "bfloat16"]))
    assert (cfg.seed, cfg.device, cfg.metrics_port, cfg.workers) == (0, "cpu", 0, 1)
    assert cfg.precision == "bfloat16"
    cfg = config_from_args(build_parser().parse_args(["introduce", "--task", "t", "--seed", "0"]))
    assert (cfg.seed, cfg.store, cfg.device, cfg.precision) == (0, "mutask-store", "auto", "auto")


def _subparser(command: str) -> argparse.ArgumentParser:
    (parser,) = [
        p
        for a in build_parser()._actions
        if isinstance(a, argparse._SubParsersAction)
        for name, p in a.choices.items()
        if name == command
    ]
    return parser


@pytest.mark.parametrize("command", ["introduce", "bootstrap", "demo"])
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every option with a value says its default (flags that switch something on are off
    by default; --config and --task have none)."""
    out = " ".join(_help([command, "--help"], capsys).split())
    for action in _subparser(command)._actions:
        if not action.option_strings or action.nargs == 0 or action.dest in ("config", "task"):
            continue
        text = " ".join((action.help or "").split())
        if action.default not in (None, argparse.SUPPRESS) and action.default is not False:
            assert "default" in text or f"(default: {action.default})" in out, action.dest
        else:
            assert "default" in text, action.dest


def test_introduce_help_shows_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    out = " ".join(_help(["introduce", "--help"], capsys).split())
    introduce = _subparser("introduce")
    for action in introduce._actions:
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in out, action.dest
    for flag in ("--store", "--seed", "--device", "--precision", "--metrics-port", "--workers"):
        help_text = next(a.help for a in introduce._actions if flag in a.option_strings)
        assert help_text is not None and "default" in help_text, flag


def test_budget_presets_with_single_fields_overridden() -> None:
    def budget(*flags: str) -> BudgetConfig:
        args = build_parser().parse_args(["introduce", "--task", "t", *flags])
        return config_from_args(args).budget

    assert budget() == BUDGETS["default"] == BudgetConfig()
    assert budget("--budget", "quick") == BUDGETS["quick"]
    assert budget("--budget", "thorough", "--steps", "7").steps_per_round == 7
    assert budget("--budget", "thorough", "--steps", "7").generations == 3
    assert budget("--epochs", "2.5").epochs == 2.5
    even = budget("--even-split")
    assert not even.halving and not even.final_training


def test_bootstrap_config_names_the_data_and_keeps_the_model_flags() -> None:
    argv = ["bootstrap", "--dataset", "data/My Scans.npz", "--max-epochs", "3", "--store", "s"]
    cfg = bootstrap_config(build_parser().parse_args(argv))
    assert cfg.task == "my-scans" and cfg.bootstrap_root and cfg.store == "s"
    assert (cfg.model.image_size, cfg.model.max_epochs) == (0, 3.0)
    args = build_parser().parse_args(["bootstrap", "--dataset", "fashion_mnist", "--task", "f"])
    assert bootstrap_config(args).task == "f"


def test_bootstrap_refuses_a_store_that_has_a_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    argv = ["bootstrap", "--store", str(store), "--dataset", "digits", "--max-epochs", "0.1"]
    assert main([*argv, "--quiet", "--device", "cpu"]) == 0
    assert '"trained_on": "digits"' in capsys.readouterr().out
    assert main([*argv, "--quiet", "--device", "cpu"]) != 0
    assert "already has a root" in capsys.readouterr().err


def test_introduce_reports_the_examples_it_spent_and_its_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    boot = ["bootstrap", "--store", store, "--dataset", "digits", "--max-epochs", "0.2"]
    assert main([*boot, "--quiet", "--device", "cpu"]) == 0
    assert '"image_size": 8' in capsys.readouterr().out  # the data's own size (8x8 digits)
    argv = ["introduce", "--store", store, "--task", "low", "--labels", "0,1,2", "--quiet"]
    tiny = ["--generations", "1", "--candidates", "2", "--rounds", "2", "--steps", "2"]
    assert main([*argv, *tiny, "--batch-size", "8", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    # 2 candidates x 1 round, then the winner 1 more (halving), then the round saved (final)
    assert report["examples"] == 2 * 2 * 2 * 8
    assert report["seconds"] >= 0 and report["no_forgetting_verified"]


def test_demo_states_the_budget_behind_its_accuracies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, report = str(tmp_path / "store"), str(tmp_path / "report")
    argv = ["demo", "--quick", "--quiet", "--store", store, "--report", report]
    assert main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "budget per task: a smoke budget (--quick) (README: Budgets): 1 generation(s)" in out
    assert out.count(" training examples (") == 4  # every visit: examples and time
    assert "VERIFIED" in out


def test_zero_workers_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["introduce", "--store", str(tmp_path), "--task", "digits", "--workers", "0"]
    assert "workers=0" in _bad_input(argv, capsys)


def test_show_on_an_empty_store_prints_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", "--store", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "empty store" in out and "mutask demo" in out


def test_gc_on_an_empty_store_deletes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc", "--store", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would delete 0 blob(s)")
