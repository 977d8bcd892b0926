"""docker/: every pg2edge command in the compose file is a real command with real flags."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pg2edge.cli import build_parser

DOCKER = Path(__file__).resolve().parent.parent / "docker"
REPO = DOCKER.parent


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def argv_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def pg2edge_services() -> list[Any]:
    out = []
    for name, service in compose()["services"].items():
        argv = argv_of(service)
        if argv[:1] == ["pg2edge"]:
            out.append(pytest.param(name, argv[1:], id=name))
    return out


def test_compose_has_the_components() -> None:
    services = compose()["services"]
    assert {"postgres", "kafka", "prefect", "publish", "replica"} <= set(services)
    pg = argv_of(services["postgres"])
    assert services["postgres"]["image"].startswith("postgres:15") and "wal_level=logical" in pg
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka") and "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert argv_of(services["prefect"])[:3] == ["prefect", "server", "start"]
    assert argv_of(services["publish"]) == ["pg2edge", "publish", "--source",
                                            "postgresql://pg2edge@postgres:5432/shop", "--bootstrap", "kafka:9092"]
    assert argv_of(services["replica"]) == ["pg2edge", "sync", "--from-kafka", "--bootstrap", "kafka:9092",
                                            "--target", "/data/replica.db", "--group", "edge-1"]
    text = (DOCKER / "compose.yaml").read_text()
    assert "postgresql://pg2edge:" not in text  # no password inside a DSN


@pytest.mark.parametrize(("name", "argv"), pg2edge_services())
def test_service_command_parses(name: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports the bad flag on stderr
        pytest.fail(f"service {name}: `pg2edge {' '.join(argv)}` does not parse (exit {exc.code})")
    assert args.command == argv[0]


def test_every_pg2edge_service_is_checked() -> None:
    names = {p.id for p in pg2edge_services()}
    assert {"publish", "replica", "sample", "status", "export-d1", "export-turso"} <= names


def test_dockerfile_installs_the_repository() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text and "pip install ." in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    build = compose()["x-pg2edge"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (DOCKER / "Dockerfile").resolve()
