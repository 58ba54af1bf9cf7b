"""Read the records of a W&B offline run file (`run-*.wandb`) without W&B's servers or CLI.

The file is a 7-byte W&B header followed by a LevelDB-style log: 32 KiB blocks of records with a
7-byte header (crc32, length uint16, type: 1 full, 2 first, 3 middle, 4 last); each record payload is a
`wandb_internal_pb2.Record` protobuf.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    payloads, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left_in_block - HEADER
            continue
        fragment = data[pos:pos + length]
        pos += length
        if kind == FULL:
            payloads.append(fragment)
        elif kind == FIRST:
            pending = fragment
        elif kind == MIDDLE:
            pending += fragment
        elif kind == LAST:
            payloads.append(pending + fragment)
    parsed = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        parsed.append(record)
    return parsed


def run_group(path: Path) -> str | None:
    """The W&B group the run file's run was created in (None: the file holds no run record yet)."""
    return next((r.run.run_group for r in records(path) if r.WhichOneof("record_type") == "run"), None)


def logged_values(path: Path) -> dict[str, str]:
    """The last JSON value of every metric key logged with `run.log` in the run file."""
    values = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                values[item.key or "/".join(item.nested_key)] = item.value_json
    return values


def wait_for_keys(paths: list[Path], keys: set[str], timeout: float = 60.0) -> dict[str, str]:
    """Logged values of the run files once every key is there: W&B's service process writes the file
    asynchronously and may still be flushing when `run.finish()` has returned on a loaded machine."""
    deadline = time.time() + timeout
    while True:
        values = {}
        for path in paths:
            values.update(logged_values(path))
        if keys <= set(values) or time.time() > deadline:
            return values
        time.sleep(0.5)
