"""A file is written whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kam.features.atomic import atomic_path


def test_the_target_appears_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.csv"
    with atomic_path(target) as temporary:
        temporary.write_text("a,b\n1,2\n")
        assert not target.exists()
        assert temporary.parent == target.parent
    assert target.read_text() == "a,b\n1,2\n"
    assert os.listdir(target.parent) == ["out.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(OSError, match="No space left"), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_the_file_gets_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    with atomic_path(tmp_path / "atomic") as temporary:
        temporary.write_text("x")
    mode = stat.S_IMODE((tmp_path / "atomic").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode)


def test_an_unwritable_folder_is_an_os_error_before_anything_is_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError), atomic_path(blocker / "out.csv"):
        pytest.fail("the block must not run")
