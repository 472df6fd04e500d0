from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from telepty.config import Config
from tests.helpers import DaemonProcess, daemon_env, stop_leftover_daemons


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    """A test that fails before stopping its daemons must not leave them running."""
    yield
    stop_leftover_daemons()


def _stop_gracefully(daemons: list[DaemonProcess]) -> None:
    """SIGTERM what is still running, so a test's daemons shut down the way users' do."""
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def config(home: Path) -> Config:
    """Small timings, a private home: never the production defaults."""
    return Config(
        home=home,
        port=0,
        machine_id="test-machine",
        quiet_ms=200,
        retry_schedule=(0.3, 0.6),
        retry_jitter=0.0,
        liveness_interval=0.2,
        settle_ms=50,
    )


@pytest.fixture
async def client(aiohttp_client, config: Config):  # type: ignore[no-untyped-def]
    from telepty.daemon import create_app

    return await aiohttp_client(create_app(config))


@pytest.fixture
def daemon_factory(home: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[DaemonProcess] = []

    def make(**env: str) -> DaemonProcess:
        d = DaemonProcess(home=home, env=daemon_env(home, **env))
        started.append(d)
        return d

    yield make
    _stop_gracefully(started)


@pytest.fixture
def daemon(daemon_factory) -> DaemonProcess:  # type: ignore[no-untyped-def]
    return daemon_factory().start()


@pytest.fixture
def machines(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Daemons for several machines: each its own home and machine id (not started)."""
    started: list[DaemonProcess] = []

    def make(name: str, *, port: int = 0, **env: str) -> DaemonProcess:
        home = tmp_path / f"home-{name}"
        home.mkdir(exist_ok=True)
        d = DaemonProcess(home=home, env=daemon_env(home, TELEPTY_MACHINE_ID=name, **env), port=port)
        started.append(d)
        return d

    yield make
    _stop_gracefully(started)


_INTEGRATION_DIRS = ("integration", "realagents")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration and tests/realagents is ``integration`` (real
    tmux, PTYs, daemons, agent CLIs), so ``-m "not integration"`` is the fast unit run."""
    for item in items:
        if any(part in _INTEGRATION_DIRS for part in Path(str(item.fspath)).parts):
            item.add_marker(pytest.mark.integration)
