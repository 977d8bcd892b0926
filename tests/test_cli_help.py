"""Every command has help text with an example."""

import pytest

from pg2edge.cli import build_parser


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_every_command_has_an_example(name: str) -> None:
    sub = _subparsers()[name]
    text = sub.format_help()
    assert "Example:" in text and f"pg2edge {name}" in text.split("Example:")[1]


def test_bad_config_exits_2_naming_the_key(run_cli, tmp_path) -> None:
    (tmp_path / "pg2edge.toml").write_text('[analyze]\nwindw = "5m"\n')
    result = run_cli("sample", "workload")
    assert result.returncode == 2
    assert "unknown key 'analyze.windw'" in result.stderr
