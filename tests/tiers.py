"""The two test tiers, and the guard that keeps them honest.

    make test-fast   pytest -m "not integration"   no Ray, no servers, no browser: the inner loop (< 3 min)
    make test        pytest                         the whole suite, what CI runs (< 15 min on 2 cores)

A test is ``integration`` when it says so (a module's ``pytestmark`` or a decorator: tests that launch a job
process which starts its own Ray, or a local cluster) or when it uses a fixture that starts a service
(``SERVICE_FIXTURES``, matched against the fixture closure pytest computes, so a fixture built on one of
them counts too). Every other test is a unit test, and the guard below holds it to that in both tiers: a unit
test whose process starts a Ray, MLflow, S3 or browser process fails, naming the command, so a mislabelled
test is caught by CI rather than by a slow inner loop. (Ray's ``ray.init()`` starts ``gcs_server`` and
``raylet`` through ``subprocess.Popen``, so in-process Ray is caught the same way.)
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

INTEGRATION = "integration"

# Session fixtures that start a service; a test using any of them (directly or through another fixture) is an
# integration test.
SERVICE_FIXTURES = frozenset(
    {"ray_cluster", "mlflow_server", "s3_server", "synthetic_shards", "trained_pair"}
)

# What a unit test may not start: Ray's processes, the servers the tests use, a browser.
SERVICE_COMMAND = re.compile(
    r"gcs_server|raylet|\bray\b.*\bstart\b|mlflow\S*\s+server|moto_server|moto\.server|chrom(e|ium)"
)


class UnitTestStartedAService(AssertionError):
    """A test not marked ``integration`` started a service."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def service_in(args: Any) -> str | None:
    """The command line of ``args`` (a string or a sequence) when it starts a service, else None."""
    command = args if isinstance(args, str) else " ".join(str(a) for a in args)
    return command if SERVICE_COMMAND.search(command) else None


@pytest.fixture(autouse=True)
def _unit_tests_start_no_service(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker(INTEGRATION) is not None:
        yield
        return
    original = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        command = service_in(args)
        if command is not None:
            raise UnitTestStartedAService(
                f"{request.node.nodeid} starts a service ({command[:200]}): mark it "
                f"@pytest.mark.{INTEGRATION} (tests/tiers.py)"
            )
        original(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
    yield
