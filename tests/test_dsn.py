import pytest

from pg2edge import dsn as dsnlib
from pg2edge.errors import SourceError


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://app:s3cr3t-pw@db.example:6543/shop", "host=db.example port=6543 dbname=shop user=app password=s3cr3t-pw"],
)
def test_redact_and_describe_never_show_the_password(dsn: str) -> None:
    assert "s3cr3t-pw" not in dsnlib.redact(dsn)
    label = dsnlib.describe(dsn)
    assert "s3cr3t-pw" not in label
    assert "db.example" in label and "6543" in label and "shop" in label


def test_unreachable_server_names_host_port_database_not_password() -> None:
    from pg2edge.pgcluster import free_port

    port = free_port()
    with pytest.raises(SourceError) as err:
        dsnlib.connect(f"postgresql://app:s3cr3t-pw@127.0.0.1:{port}/shop", connect_timeout=2)
    text = str(err.value)
    assert f"port {port}" in text and "database shop" in text and "127.0.0.1" in text
    assert "s3cr3t-pw" not in text
