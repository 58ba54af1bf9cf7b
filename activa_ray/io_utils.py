"""Files that appear whole or not at all: write under a temporary name beside the target, then
rename (atomic on one filesystem), so a crash or a reader never sees half a file. And JSON-lines logs,
which grow a record at a time (their readers take complete lines only)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; it becomes `path` when the block ends, and is
    removed when the block raises. The parent folder is created.

    The name, ".NAME.PID.RANDOM.tmp", is hidden, unique to the writer, and ends in .tmp so that
    a cleanup can find what an interrupted writer left.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append `record` to a JSON-lines file as one line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
