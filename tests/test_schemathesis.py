"""Schemathesis over our own /openapi.json against a live server: no 5xx, responses as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from conftest import LiveServer, new_cli_key

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(params=["sqlite", "postgres"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, str]]:
    store_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    server = LiveServer(Path(tmp_path_factory.mktemp("fuzz")) / "data", store_url=store_url).start()
    try:
        _, key = new_cli_key(server.data_dir, "read,write,admin", store_url=store_url)
        yield server, key
    finally:
        server.stop()


def test_every_operation_holds_its_contract(fuzz_server: tuple[LiveServer, str]) -> None:
    server, key = fuzz_server
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            # Schema-valid is not always acceptable here (a window of "0h", an unknown agent):
            # the contract checked is no 5xx, documented statuses and bodies, invalid data refused.
            case.call_and_validate(
                headers={"x-api-key": key},
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    statuses = [line for line in server.log.read_text().splitlines() if '"status":' in line]
    assert len(statuses) > 10 * len(operations)  # it really sent many requests
    assert not [line for line in statuses if '"status":5' in line]
