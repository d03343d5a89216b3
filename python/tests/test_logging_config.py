"""logging_config: SNAKEPIT_LOG_LEVEL, configure_logging's idempotence, correlation ids on records, in-process and in a worker."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
from wire_client import WorkerClient

import snakepit_bridge
from snakepit_bridge import logging_config, telemetry
from snakepit_bridge.logging_config import LOG_LEVEL_ENV, configure_logging, get_logger

H = telemetry.CORRELATION_HEADER


@pytest.fixture
def root_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """Leaves the root logger as it found it, and configure_logging unconfigured."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(logging_config, "_handler", None)
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if any(isinstance(f, logging_config.CorrelationIdFilter) for f in h.filters)]


def test_reexported_at_the_top_level() -> None:
    assert snakepit_bridge.configure_logging is configure_logging
    assert snakepit_bridge.get_logger is get_logger
    assert {"configure_logging", "get_logger"} <= set(snakepit_bridge.__all__)
    assert set(logging_config.__all__) <= set(dir(logging_config))


def test_default_level_is_info(root_state: logging.Logger) -> None:
    configure_logging()
    assert root_state.level == logging.INFO
    assert len(ours(root_state)) == 1


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("debug", logging.DEBUG),
        ("INFO", logging.INFO),
        ("Warning", logging.WARNING),
        ("error", logging.ERROR),
        ("CRITICAL", logging.CRITICAL),
        (" none ", logging.CRITICAL + 10),
        ("", logging.INFO),
    ],
)
def test_level_from_the_environment(
    root_state: logging.Logger, monkeypatch: pytest.MonkeyPatch, value: str, level: int
) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, value)
    configure_logging()
    assert root_state.level == level


def test_none_silences_everything(
    root_state: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "none")
    configure_logging()
    get_logger("t.none").critical("not shown")
    assert "not shown" not in capsys.readouterr().err


def test_an_unknown_level_falls_back_and_says_so(
    root_state: logging.Logger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "loud")
    configure_logging()
    assert root_state.level == logging.INFO
    err = capsys.readouterr().err
    assert "SNAKEPIT_LOG_LEVEL='loud' is not one of" in err and "logging at info" in err


def test_idempotent_unless_forced(root_state: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "error")
    configure_logging()
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    configure_logging()
    assert root_state.level == logging.ERROR and len(ours(root_state)) == 1
    configure_logging(force=True)
    assert root_state.level == logging.DEBUG and len(ours(root_state)) == 1


def test_lines_carry_the_correlation_id(root_state: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    log = logging.getLogger("t.plain")  # not from get_logger: the handler gives it the id
    log.info("outside")
    token = telemetry.set_correlation_id("cid-42")
    try:
        log.warning("inside %d", 1)
        get_logger("t.mine").info("mine")
        log.debug("too low")
    finally:
        telemetry.reset_correlation_id(token)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[-\] t\.plain: outside", lines[0])
    assert lines[1].endswith("WARNING [cid-42] t.plain: inside 1")
    assert lines[2].endswith("INFO [cid-42] t.mine: mine")


def test_get_logger_records_carry_the_id(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("t.records")
    assert get_logger("t.records") is log is logging.getLogger("t.records")
    assert sum(isinstance(f, logging_config.CorrelationIdFilter) for f in log.filters) == 1
    with caplog.at_level(logging.INFO, logger="t.records"):
        log.info("no id")
        token = telemetry.set_correlation_id("abc-123")
        try:
            log.info("with id")
            log.info("given", extra={"correlation_id": "explicit"})
        finally:
            telemetry.reset_correlation_id(token)
    assert [(r.getMessage(), r.correlation_id) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("no id", logging_config.NO_CORRELATION_ID),
        ("with id", "abc-123"),
        ("given", "explicit"),
    ]
    assert logging_config.NO_CORRELATION_ID == "-"


# -------------------------------------------------------- through a worker


def worker_stderr(c: WorkerClient) -> str:
    c.sock.close()
    c.wait_exit()
    return c.stderr_text()


def run_logs(spawn: Callable[..., WorkerClient]) -> str:
    c = spawn("obs_adapter.ObsAdapter")
    assert c.call("logs", msg="m1", metadata={H: "req-1"}) == "req-1"
    assert c.call("logs", msg="m2") == ""
    fid = c.execute("stream_ids", n=2, stream=True, window=8, metadata={H: "req-s"})
    while not (f := c.recv()).chunk.is_final:
        assert f.id == fid
    return worker_stderr(c)


def test_worker_logs_at_debug_with_request_ids(
    spawn: Callable[..., WorkerClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "DEBUG")
    err = run_logs(spawn)
    assert "INFO [req-1] obs_adapter: via get_logger: m1" in err
    assert "WARNING [req-1] obs_adapter.plain: via a plain logger: m1" in err
    assert "DEBUG [req-1] obs_adapter: debug line: m1" in err
    assert "INFO [-] obs_adapter: via get_logger: m2" in err
    assert "INFO [req-s] obs_adapter: step 0" in err and "INFO [req-s] obs_adapter: step 1" in err


def test_worker_default_level_is_info(spawn: Callable[..., WorkerClient], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    err = run_logs(spawn)
    assert "INFO [req-1] obs_adapter: via get_logger: m1" in err
    assert "WARNING [-] obs_adapter.plain: via a plain logger: m2" in err
    assert "debug line" not in err


@pytest.mark.parametrize(("value", "shown"), [("warning", ["via a plain logger"]), ("none", []), ("Error", [])])
def test_worker_level_from_the_environment(
    spawn: Callable[..., WorkerClient], monkeypatch: pytest.MonkeyPatch, value: str, shown: list[str]
) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, value)
    err = run_logs(spawn)
    for text in ("via get_logger", "via a plain logger", "debug line", "step 0"):
        assert (text in err) == (text in shown), (value, text, err)
