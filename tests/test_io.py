"""emocli/core/io.py: atomic writes and the one-line errors every writer shares."""

from __future__ import annotations

import errno

import pytest

from emocli.core.errors import ConfigError, OutputError
from emocli.core.io import atomic_open, check_writable, os_error_in, write_text, write_with


def test_a_write_is_whole_or_absent(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_text(path, "first")
    with pytest.raises(ZeroDivisionError), atomic_open(path, "w") as handle:
        handle.write("half of the second")
        1 / 0  # a writer failing halfway: the old file stays, no temporary remains
    assert path.read_text() == "first" and [p.name for p in path.parent.iterdir()] == ["a.json"]


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors' way
])
def test_os_errors_become_one_line_naming_the_file(tmp_path, failure):
    path = tmp_path / "model.safetensors"

    def writer(temporary):
        temporary.write_bytes(b"partial")
        raise failure

    with pytest.raises(OutputError) as caught:
        write_with(path, writer)
    assert str(caught.value) == (f"{path}: cannot write (No space left on device; free some space and run the same "
                                 "command again)")
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(ConfigError, match="bad"):
        write_with(tmp_path / "x", lambda temporary: (_ for _ in ()).throw(ConfigError("bad")))
    try:
        raise OSError(errno.EIO, "Input/output error")
    except OSError:
        hidden = ValueError("unrelated")  # raised while an OSError was handled, but not caused by it
        hidden.__suppress_context__ = True
        assert os_error_in(hidden) is None


def test_check_writable_refuses_what_could_not_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert check_writable(tmp_path / "new" / "deeper" / "out.csv") == tmp_path / "new" / "deeper" / "out.csv"
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".emo-write-check-*"))  # nothing stays
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(blocker / "out.csv")
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        check_writable(tmp_path)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(blocker, folder=True)
