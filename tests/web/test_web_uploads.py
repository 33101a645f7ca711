"""Hostile upload corpus (issue 7, Verification → Reliability): every upload is refused with a
message in words, and no file lands outside the store (nor stays in its tmp folder).

Corpus: zip bomb (declared size and expansion ratio), path traversal (``..`` and absolute),
symlink entry, 0-byte file, not-a-zip, lone DICOM file, truncated DICOM inside a study,
10 000 tiny files, missing case.yaml.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from webtest_helpers import login, small_case, upload

from latplan.imaging.case_folder import save_case_folder
from latplan.interop.exports import derived_ct_series


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _symlink_zip() -> bytes:
    info = zipfile.ZipInfo("case/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip([(info, b"/etc/passwd"), ("case/case.yaml", b"patient: {id: X, primary: colorectal}\n")])


def _truncated_dicom_study(tmp: Path) -> bytes:
    case = small_case("TRUNC-1", shape=(6, 16, 16))
    folder = tmp / "trunc"
    save_case_folder(case, folder)
    (folder / "image.nii.gz").unlink()
    files = derived_ct_series(case.image, folder / "dicom")
    data = files[3].read_bytes()
    files[3].write_bytes(data[: len(data) - 200])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()


def _lone_dicom(tmp: Path) -> bytes:
    files = derived_ct_series(small_case("ONE", shape=(2, 8, 8)).image, tmp / "one")
    return files[0].read_bytes()


CORPUS = {
    "zip bomb (size)": (lambda tmp: _zip([("case.yaml", b"x"), ("image.nii", bytes(300 * 2**20))]), "would expand"),
    "zip bomb (ratio)": (lambda tmp: _zip([("case.yaml", b"x"), ("image.nii", bytes(80 * 2**20))]), "zip bomb"),
    "path traversal": (lambda tmp: _zip([("../../evil.txt", b"owned")]), "outside the folder"),
    "absolute path": (lambda tmp: _zip([("/tmp/latplan-evil.txt", b"owned")]), "absolute path"),
    "symlink": (lambda tmp: _symlink_zip(), "symbolic link"),
    "0-byte file": (lambda tmp: b"", "empty"),
    "not a zip": (lambda tmp: b"hello, this is not a zip" * 10, "not a zip"),
    "lone DICOM file": (_lone_dicom, "single DICOM file"),
    "truncated DICOM": (_truncated_dicom_study, "truncated"),
    "10 000 tiny files": (lambda tmp: _zip([(f"f{n:05d}.txt", b"x") for n in range(10_000)]), "entries"),
    "no case.yaml": (lambda tmp: _zip([("readme.txt", b"hello")]), "case.yaml is missing"),
}


@pytest.mark.slow  # measured ≥ 4 CPU s (tests/support/ci_schedule.py DURATIONS_S): out of `make test-fast`
def test_web_hostile_upload_corpus(sqlite_client, sqlite_settings, tmp_path):
    """Each hostile upload → 422 (413-like size errors included) with its reason in words; store untouched."""
    csrf = login(sqlite_client, "coord")
    before = {p for p in tmp_path.rglob("*")}
    for label, (make, expected) in CORPUS.items():
        data = make(tmp_path / "mk")
        made = {p for p in (tmp_path / "mk").rglob("*")} if (tmp_path / "mk").exists() else set()
        before |= made | {tmp_path / "mk"}
        r = upload(sqlite_client, csrf, data, name=f"{label}.zip")
        assert r.status_code == 422, (label, r.status_code, r.text)
        assert expected in r.json()["error"], (label, r.json()["error"])
    data_dir = sqlite_settings.data_dir
    assert list((data_dir / "tmp").iterdir()) == []
    assert list((data_dir / "objects").rglob("*")) == []
    assert not Path("/tmp/latplan-evil.txt").exists()
    after = {p for p in tmp_path.rglob("*")}
    new = {p for p in after - before if not str(p).startswith(str(data_dir)) and "web.db" not in p.name}
    assert new == set(), new
    assert sqlite_client.get("/cases", headers={"accept": "application/json"}).json()["total"] == 0
    login(sqlite_client, "admin")
    events = sqlite_client.get("/admin/audit?action=upload_rejected", headers={"accept": "application/json"}).json()
    assert len(events["events"]) == len(CORPUS)


def test_web_upload_rejection_shown_in_words(sqlite_client):
    """The HTML form path shows the reason on a page (not a stack trace)."""
    csrf = login(sqlite_client, "coord")
    r = sqlite_client.post("/cases", files={"upload": ("x.zip", b"", "application/zip")},
                           data={"board_id": "1", "csrf_token": csrf})
    assert r.status_code == 422
    assert "the uploaded file is empty" in r.text and "Traceback" not in r.text


def test_web_dicom_study_upload(sqlite_client, sqlite_settings, tmp_path):
    """A zip of case.yaml + dicom/ (CT series) + labels on the same grid is accepted; source = dicom."""
    case = small_case("DCM-1", shape=(8, 20, 20))
    folder = tmp_path / "dcm"
    save_case_folder(case, folder)
    (folder / "image.nii.gz").unlink()
    derived_ct_series(case.image, folder / "dicom")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, "DCM-1/" + p.relative_to(folder).as_posix())
    csrf = login(sqlite_client, "coord")
    r = upload(sqlite_client, csrf, buf.getvalue())
    assert r.status_code == 201, r.text
    summary = r.json()["summary"]
    assert summary["source"] == "dicom" and summary["patient_id"] == "DCM-1"
    assert summary["lesion_ids"] == ["lesion_1"] and summary["shape_kji"] == [8, 20, 20]


def test_web_oversized_upload_refused_while_streaming(tmp_path):
    """A body above the upload limit is refused with 413 before the multipart parser spools it."""
    from fastapi.testclient import TestClient
    from webtest_helpers import make_settings, seed_users

    from latplan.web.app import create_app

    settings = make_settings(f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "data", max_upload_bytes=1_000_000)
    seed_users(settings)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = login(client, "coord")
        r = upload(client, csrf, bytes(3_000_000))
        assert r.status_code == 413 and "larger than the limit" in r.json()["error"]

        def chunks():  # multipart without Content-Length: counted while streaming
            yield (b'--XyZ\r\nContent-Disposition: form-data; name="board_id"\r\n\r\n1\r\n--XyZ\r\n'
                   b'Content-Disposition: form-data; name="upload"; filename="c.zip"\r\n'
                   b"Content-Type: application/zip\r\n\r\n")
            for _ in range(30):
                yield bytes(100_000)
            yield b"\r\n--XyZ--\r\n"

        r = client.post("/cases", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ",
                                                               "X-CSRF-Token": csrf})
        assert r.status_code == 413
    assert list((settings.data_dir / "tmp").iterdir()) == []
