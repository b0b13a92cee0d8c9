"""The tiers' rules (tests/tiers.py) hold and can fail: a service fixture makes a test integration, and a unit
test that starts a service fails naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import UnitTestStartedAService, service_in

CONFTEST = """
import pytest

pytest_plugins = ["tests.tiers"]


@pytest.fixture(scope="session")
def mlflow_server():
    return "stands in for the session server: only its name matters to the tiers"


@pytest.fixture
def built_on_a_server(mlflow_server):
    return mlflow_server
"""

TESTS = """
import subprocess
import sys

import pytest


def test_plain():
    assert True


def test_uses_the_server(mlflow_server):
    assert mlflow_server


def test_uses_it_through_another_fixture(built_on_a_server):
    assert built_on_a_server


@pytest.mark.integration
def test_marked():
    assert True


def test_starts_a_server_unmarked():
    subprocess.run([sys.executable, "-c", "pass", "moto_server"], check=True)


@pytest.mark.integration
def test_starts_a_server_marked():
    subprocess.run([sys.executable, "-c", "pass", "moto_server"], check=True)
"""


def test_service_commands_are_recognised() -> None:
    for command in (
        "mlflow server --port 5000",
        f"{sys.executable} -m mlflow server",
        "ray start --head",
        ["/venv/lib/python3.12/site-packages/ray/core/src/ray/gcs/gcs_server", "--port=0"],
        ["/x/raylet", "--node_ip_address=127.0.0.1"],
        ["moto_server", "-p", "5001"],
        ["chromium", "--headless", "--dump-dom", "http://127.0.0.1"],
    ):
        assert service_in(command), command
    for command in (
        [sys.executable, "-m", "jobs.train", "--help"],
        ["ffprobe", "video.mp4"],
        "git rev-parse HEAD",
    ):
        assert service_in(command) is None, command


def test_a_unit_test_that_starts_a_service_fails_here() -> None:
    with pytest.raises(UnitTestStartedAService, match="mark it @pytest.mark.integration"):
        subprocess.run([sys.executable, "-c", "pass", "moto_server"], check=True)


def test_tiers_classify_and_guard(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # In a process of its own: this test's own guard would otherwise hold for the sample's marked tests too.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_sample=TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    integration: starts a service\n")
    fast = pytester.runpytest_subprocess("-m", "not integration", "-p", "no:cacheprovider")
    fast.assert_outcomes(passed=1, failed=1, deselected=4)
    fast.stdout.fnmatch_lines(["*test_starts_a_server_unmarked starts a service*"])
    whole = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    whole.assert_outcomes(passed=5, failed=1)
