"""The README keeps its promises: two set-up commands, CI calls the test one, the reference is real --help."""

from pathlib import Path

from pg2edge.readme import command_reference, current_block

REPO = Path(__file__).resolve().parent.parent


def _first_code_block(text: str) -> list[str]:
    lines = text.split("```", 2)[1].splitlines()[1:]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_readme_opens_with_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    commands = _first_code_block(readme)
    assert commands == ["./dev demo", "./dev test"]
    assert "./dev test" in (REPO / ".ci" / "run").read_text()


def test_command_reference_matches_real_help() -> None:
    readme = (REPO / "README.md").read_text()
    assert current_block(readme) == command_reference(), (
        "README command reference drifted from --help: run `python -m pg2edge.readme`")


def test_the_readme_configuration_example_is_valid(tmp_path) -> None:
    import re

    from pg2edge.config import load_config

    block = re.search(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block is not None
    path = tmp_path / "pg2edge.toml"
    path.write_text(block.group(1))
    config = load_config(path, env={})
    assert config.analyze.window == 300 and config.cutover.validation_max_age == 3600
