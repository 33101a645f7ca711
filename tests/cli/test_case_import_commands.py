"""`latplan case import-totalsegmentator` argument handling (cli/case_import_commands.py).

Reference: the command's documented contract (docs/case-format.md): one --task for all outputs or one per
output; anything else is a named error before any file is read or written.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from latplan.cli import app
from latplan.errors import InvalidInputError


def test_task_count_mismatch_and_missing_output(tmp_path: Path) -> None:
    """Two outputs with three --task values, and an output path that does not exist: named errors."""
    img = tmp_path / "image.nii.gz"
    img.write_bytes(b"")
    r = CliRunner().invoke(app, ["case", "import-totalsegmentator", str(img), str(tmp_path / "a"), str(tmp_path / "b"),
                                 "--task", "total", "--task", "body", "--task", "liver_vessels", "--out",
                                 str(tmp_path / "out")])
    assert isinstance(r.exception, InvalidInputError) and "one per output (2)" in str(r.exception)
    assert not (tmp_path / "out").exists()  # refused before anything was written
