"""runtime.files: atomic writes (text and bytes, folders made, nothing left behind on failure) and write_json's
one error on an unwritable path."""
from __future__ import annotations

import json
import os
import stat

import pytest

from runtime.errors import OutputError
from runtime.files import atomic_path, atomic_write, write_json


def test_atomic_write_text_and_bytes_into_a_new_folder(tmp_path):
    atomic_write(tmp_path / "a" / "b.txt", "héllo\n")
    atomic_write(tmp_path / "a" / "c.bin", b"\x00\x01")
    assert (tmp_path / "a" / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "a" / "c.bin").read_bytes() == b"\x00\x01"
    assert sorted(os.listdir(tmp_path / "a")) == ["b.txt", "c.bin"]  # no temporary file left


def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    (tmp_path / "target").mkdir()  # os.replace of a file over a folder fails
    with pytest.raises(OSError):
        atomic_write(tmp_path / "target", "x")
    assert sorted(os.listdir(tmp_path)) == ["target"] and (tmp_path / "target").is_dir()


def test_write_json_round_trips_and_names_what_it_could_not_write(tmp_path):
    write_json(tmp_path / "r.json", {"auroc": 0.5, "rows": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"auroc": 0.5, "rows": [1, 2]}
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match=r"^cannot write --json .*: .*choose a writable path"):
        write_json(tmp_path / "f" / "r.json", {}, f"--json {tmp_path / 'f' / 'r.json'}")


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no POSIX modes on this platform")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask_not_0600(tmp_path, umask, mode):
    from runtime.manifest import load_manifest, write_manifest
    from tests.helpers.tiny_models import make_model

    model = make_model(str(tmp_path))
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.bin", b"x")
        write_json(tmp_path / "b.json", {"a": 1})
        write_manifest(model, load_manifest(model))  # a manifest, as export and calibration write them
    finally:
        os.umask(old)
    for name in ("a.bin", "b.json", "tiny.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


def test_atomic_path_renames_on_success_and_removes_the_temporary_on_failure(tmp_path):
    with atomic_path(tmp_path / "m" / "model.onnx") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path / "m") and not os.path.exists(tmp_path / "m" / "model.onnx")
        with open(tmp, "wb") as f:
            f.write(b"new")
    assert (tmp_path / "m" / "model.onnx").read_bytes() == b"new"
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "m" / "model.onnx") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise ValueError("writer failed")
    assert (tmp_path / "m" / "model.onnx").read_bytes() == b"new"  # the old file stays whole
    assert os.listdir(tmp_path / "m") == ["model.onnx"]
