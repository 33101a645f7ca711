"""Output folders (latplan.imaging.output): refused when foreign or unwritable, replaced atomically when latplan's.

Reference: the contract of issue [L] §6 (an existing non-empty --out that latplan did not write is refused
unless --overwrite; one holding latplan's manifest is replaced atomically; nothing half-written) and POSIX
rename(2) atomicity within one file system.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latplan.imaging.errors import NotLatplanOutputError, OutputNotWritableError
from latplan.imaging.output import MANIFEST_NAME, is_latplan_output, output_dir


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


def test_new_folder_gets_files_and_manifest(tmp_path: Path) -> None:
    """Files land in place with a manifest listing each file's sha256; no staging folder is left."""
    out = tmp_path / "plan"
    with output_dir(out, kind="plan") as staging:
        _write(staging, "plan.json", "{}")
    assert is_latplan_output(out)
    manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["kind"] == "plan"
    assert manifest["files"]["plan.json"] == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # sha256("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]


def test_foreign_folder_refused_unless_overwrite(tmp_path: Path) -> None:
    """A non-empty folder without the manifest (another patient's files) is refused and left as it was."""
    out = tmp_path / "plan"
    out.mkdir()
    _write(out, "other-patient.pdf", "x")
    with pytest.raises(NotLatplanOutputError, match=r"not written by latplan.*--overwrite"):
        with output_dir(out):
            pytest.fail("must not be reached")
    assert [p.name for p in out.iterdir()] == ["other-patient.pdf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]
    with output_dir(out, overwrite=True) as staging:
        _write(staging, "plan.json", "{}")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "plan.json"]


def test_latplan_folder_replaced_whole_and_kept_on_failure(tmp_path: Path) -> None:
    """A second plan replaces the first whole (no mixing); a failing write leaves the first untouched."""
    out = tmp_path / "plan"
    with output_dir(out) as staging:
        _write(staging, "a.txt", "first")
    with output_dir(out) as staging:
        _write(staging, "b.txt", "second")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "b.txt"]
    with pytest.raises(RuntimeError, match="simulated"):
        with output_dir(out) as staging:
            _write(staging, "c.txt", "third")
            raise RuntimeError("simulated failure while writing")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]


def test_unwritable_output_is_named(tmp_path: Path) -> None:
    """An output path below a regular file cannot be created: OutputNotWritableError naming it."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritableError, match=r"file.txt/out.*--out"):
        with output_dir(blocker / "out"):
            pytest.fail("must not be reached")
    with pytest.raises(OutputNotWritableError, match=r"is a file"):
        with output_dir(blocker):
            pytest.fail("must not be reached")


def test_cli_insert_lesion_unwritable_out(tmp_path: Path) -> None:
    """Through the CLI: exit ≠ 0, the named error, nothing written."""
    from typer.testing import CliRunner

    from latplan.cli import app
    from latplan.imaging.case_folder import save_case_folder
    from tests.imaging.test_imaging_bad_inputs import _base_case

    case = save_case_folder(_base_case(), tmp_path / "case")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["insert-lesion", str(case), "--at", "-2", "2", "4.5", "--diameter-mm", "9",
                                      "--out", str(blocker / "new")])
    assert result.exit_code != 0
    assert isinstance(result.exception, OutputNotWritableError), repr(result.exception)
    assert "file.txt" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "file.txt"]
