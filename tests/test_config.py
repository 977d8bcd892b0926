from pathlib import Path

import pytest

from pg2edge.config import load_config, parse_duration
from pg2edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pg2edge.toml"
    path.write_text(text)
    return path


def test_file_env_and_flags_in_that_order(tmp_path: Path) -> None:
    path = write(tmp_path, '[source]\ndsn = "host=file"\n[analyze]\nwindow = "5m"\n')
    assert load_config(path, env={}).source.dsn == "host=file"
    assert load_config(path, env={"PG2EDGE_SOURCE": "host=env"}).source.dsn == "host=env"
    cfg = load_config(path, env={"PG2EDGE_SOURCE": "host=env"}, overrides={"source": {"dsn": "host=flag"}})
    assert cfg.source.dsn == "host=flag"
    assert cfg.analyze.window == 300.0


def test_absent_flag_does_not_erase_file_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[source]\ndsn = "host=file"\n')
    assert load_config(path, env={}, overrides={"source": {"dsn": None}}).source.dsn == "host=file"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[analyze]\nwindw = "5m"\n', "analyze.windw"),
        ('[sourec]\ndsn = "x"\n', "sourec"),
        ('[analyze]\ntarget_profile = "mongo"\n', "analyze.target_profile"),
        ('[analyze]\nwindow = "five minutes"\n', "analyze.window"),
        ('[analyze.verdicts]\ngood = 5000\n', "excellent >= good >= maybe"),
        ('[translate]\nnumeric = "float"\n', "translate.numeric"),
    ],
)
def test_bad_key_or_value_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace(">", ">")):
        load_config(write(tmp_path, text), env={})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[source\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_missing_source_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError, match="--source DSN.*PG2EDGE_SOURCE"):
        load_config(None, env={}).require_source()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0), ("250ms", 0.25), ("2d", 172800.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5s", "5 weeks", "m5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
