"""Atomic outputs: complete or absent, never half-written, and readable like ordinary files."""

from __future__ import annotations

import stat

import pytest

from noisyseg.errors import DataError
from noisyseg.io import atomic_dir, atomic_path


def test_atomic_path_writes_an_ordinary_file_or_nothing(tmp_path):
    with atomic_path(tmp_path / "a" / "x.json") as tmp:
        tmp.write_text("{}")
    assert (tmp_path / "a" / "x.json").read_text() == "{}"
    assert stat.S_IMODE((tmp_path / "a" / "x.json").stat().st_mode) == 0o644
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a" / "y.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json"]


def test_atomic_dir_refuses_a_full_folder_and_leaves_no_partial_one(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "f").write_text("1")
        raise RuntimeError("killed")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("1")
    assert (out / "f").read_text() == "1"
    with pytest.raises(DataError, match="not empty"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "g").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["g"]


def test_atomic_dir_leaves_the_mode_of_hard_linked_source_files_alone(tmp_path):
    """A dataset copied by hard links (noise's Decathlon copy) must not chmod the user's files."""
    import os
    import stat

    src = tmp_path / "source.nii.gz"
    src.write_bytes(b"data")
    os.chmod(src, 0o440)
    with atomic_dir(tmp_path / "out") as tmp:
        os.link(src, tmp / "linked.nii.gz")
        (tmp / "own.txt").write_text("x")
    assert stat.S_IMODE(src.stat().st_mode) == 0o440
    assert stat.S_IMODE((tmp_path / "out" / "own.txt").stat().st_mode) == 0o644
