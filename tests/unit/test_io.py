"""engage._io: a write that fails leaves nothing half-written, and a full disk is a StorageError naming the
destination (the real full disk, a tmpfs, is tests/integration/test_faults.py)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engage._io import atomic_path, staging_dir, write_text_atomic
from engage.errors import StorageError


@pytest.mark.parametrize(
    ("code", "says"),
    [(errno.ENOSPC, "no space left on device"), (errno.EDQUOT, "quota"), (errno.EFBIG, "too large")],
)
def test_a_full_disk_is_a_storage_error_naming_the_file_and_the_old_file_stays(
    tmp_path: Path, code: int, says: str
) -> None:
    target = write_text_atomic(tmp_path / "report.json", "old\n")

    def write_half() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new", encoding="utf-8")
            raise OSError(code, "the write failed")

    with pytest.raises(StorageError, match=says) as caught:
        write_half()
    assert str(target) in caught.value.message
    assert isinstance(caught.value.__cause__, OSError)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_other_os_errors_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), atomic_path(tmp_path / "x.json"):
        raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []


def test_a_staging_folder_on_a_full_disk_is_removed(tmp_path: Path) -> None:
    def stage() -> None:
        with staging_dir(tmp_path / "model") as staging:
            (staging / "a.bin").write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="model"):
        stage()
    assert list(tmp_path.iterdir()) == []
