"""Whole-or-nothing file writes (activa_ray/io_utils.py)."""

from __future__ import annotations

import pytest

from activa_ray.io_utils import atomic_path, atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "nested" / "out.json"
    atomic_write_text(path, "first")
    assert atomic_write_text(path, "second") == path and path.read_text() == "second"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "nested", "out.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            assert temporary.parent == tmp_path and temporary.name.startswith(".out.txt.")
            assert temporary.name.endswith(".tmp")
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
