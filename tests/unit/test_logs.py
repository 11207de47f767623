"""Log lines: JSON for collectors, text for terminals, fields kept through the queue."""

from __future__ import annotations

import io
import json
import logging

from registryd.ops.logs import JsonFormatter, TextFormatter, configure_logging, formatter_for


def record(message: str, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("registryd.access", logging.INFO, __file__, 1, message, (), None)
    rec.fields = fields
    return rec


def test_json_line_has_fields_at_top_level() -> None:
    line = JsonFormatter().format(record("GET /x 200", request_id="abc", status=200, user=None))
    entry = json.loads(line)
    assert entry["message"] == "GET /x 200"
    assert entry["level"] == "info"
    assert entry["logger"] == "registryd.access"
    assert entry["request_id"] == "abc"
    assert entry["status"] == 200
    assert entry["user"] is None
    assert entry["time"].endswith("Z")
    assert "\n" not in line


def test_text_line_appends_known_fields() -> None:
    line = TextFormatter().format(record("GET /x 200", request_id="abc", user=None))
    assert line.endswith("registryd.access: GET /x 200 request_id=abc")


def test_auto_is_text_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(formatter_for("auto", Tty()), TextFormatter)
    assert isinstance(formatter_for("auto", io.StringIO()), JsonFormatter)
    assert isinstance(formatter_for("text", io.StringIO()), TextFormatter)


def test_configured_logging_keeps_fields_and_tracebacks() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stop = configure_logging("info", "json", stream)
    try:
        log = logging.getLogger("registryd.test")
        log.debug("hidden")
        log.info("hello %s", "world", extra={"fields": {"k": 1}})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        stop()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["message"] for e in lines] == ["hello world", "failed"]
    assert lines[0]["k"] == 1
    assert "ValueError: boom" in lines[1]["exception"]
