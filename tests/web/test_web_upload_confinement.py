"""Uploads cannot make planning read outside the upload; truncated NIfTI and damaged zips are 4xx.

References: issue [N] High findings 1 and 3, Low (malformed zips answer 500, messages show
server paths); OWASP ASVS 5 V12.3 (file paths from user input confined). Each hostile case was
accepted (or answered 500) by the code before this change.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest
from webtest_helpers import login, small_case, upload

from latplan.imaging.case_folder import save_case_folder


def _folder_zip(folder: Path, extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder).as_posix()
            if p.is_file() and rel not in drop and rel not in (extra or {}):
                zf.write(p, rel)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("conf") / "C"
    save_case_folder(small_case("CONF-1", shape=(10, 16, 16)), folder)
    return folder


def test_case_yaml_paths_outside_the_upload_refused(sqlite_client, sqlite_settings, case_folder, tmp_path):
    """case.yaml naming an absolute server path, '..' or a path through a symlink → 422; nothing stored.
    Before: a 307-byte zip holding only case.yaml with absolute image:/labels: paths was read and stored."""
    # a complete case on the server's disk, outside any upload: the attacker names it
    outside = tmp_path / "server-files"
    save_case_folder(small_case("VICTIM", shape=(10, 16, 16)), outside)
    csrf = login(sqlite_client, "coord")
    hostile = {
        "absolute": f"patient: {{id: X, primary: colorectal}}\nimage: {outside / 'image.nii.gz'}\n"
                    f"labels: {outside / 'labels.nii.gz'}\n",
        "dotdot": "patient: {id: X, primary: colorectal}\nimage: ../../server-files/image.nii.gz\n",
        "label table": "patient: {id: X, primary: colorectal}\nlabel_table: /etc/passwd\n",
    }
    for label, text in hostile.items():
        r = upload(sqlite_client, csrf, _folder_zip(case_folder, {"case.yaml": text.encode()}), name=f"{label}.zip")
        assert r.status_code == 422, (label, r.text)
        assert "outside the case folder" in r.json()["error"], (label, r.json())
        assert str(tmp_path) not in r.json()["error"]
    minimal = zipfile.ZipFile(buf := io.BytesIO(), "w")
    minimal.writestr("case.yaml", hostile["absolute"])
    minimal.close()
    r = upload(sqlite_client, csrf, buf.getvalue(), name="307.zip")
    assert r.status_code == 422 and "outside the case folder" in r.json()["error"]
    assert list((sqlite_settings.data_dir / "objects").rglob("*")) == []
    assert sqlite_client.get("/cases", headers={"accept": "application/json"}).json()["total"] == 0


def test_symlink_out_of_the_folder_refused(tmp_path):
    """A symlink inside the extracted folder (however it got there) is refused by the check."""
    from latplan.web.uploads import UploadRejectedError, check_case_paths

    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "case.yaml").write_text("patient: {id: X, primary: colorectal}\nimage: img/image.nii.gz\n")
    (folder / "img").symlink_to("/etc")
    with pytest.raises(UploadRejectedError, match="symbolic link"):
        check_case_paths(folder)


def test_stored_upload_holds_every_file_planning_reads(sqlite_client, sqlite_settings, case_folder):
    """An accepted case.yaml naming files inside the zip: the stored object holds them, and its tree
    hash (the job key's input) changes when any of them changes."""
    from latplan.store.blobs import tree_sha256

    text = b"patient: {id: CONF-1, primary: colorectal}\nimage: scans/ct.nii.gz\nlabels: labels.nii.gz\n"
    image = (case_folder / "image.nii.gz").read_bytes()
    csrf = login(sqlite_client, "coord")
    r = upload(sqlite_client, csrf, _folder_zip(case_folder, {"case.yaml": text, "scans/ct.nii.gz": image},
                                                drop=("image.nii.gz",)))
    assert r.status_code == 201, r.text
    digest = r.json()["content_sha256"]
    stored = sqlite_settings.data_dir / "objects" / digest[:2] / digest
    assert (stored / "scans" / "ct.nii.gz").read_bytes() == image
    assert tree_sha256(stored) == digest


def _truncated_nifti_zip(case_folder: Path, gz: bool) -> bytes:
    data = gzip.decompress((case_folder / "image.nii.gz").read_bytes())
    cut = data[: len(data) - 600]  # the last slices are missing
    name = "image.nii.gz" if gz else "image.nii"
    payload = gzip.compress(cut) if gz else cut
    return _folder_zip(case_folder, {name: payload}, drop=("image.nii.gz",))


@pytest.mark.parametrize("gz", [True, False], ids=["nii.gz", "nii"])
def test_truncated_nifti_refused(sqlite_client, case_folder, gz):
    """A NIfTI image shorter than its header declares → 422 naming the file (before: accepted, planned)."""
    csrf = login(sqlite_client, "coord")
    r = upload(sqlite_client, csrf, _truncated_nifti_zip(case_folder, gz))
    assert r.status_code == 422, r.text
    assert "is truncated" in r.json()["error"] and "image.nii" in r.json()["error"]


def test_truncated_gzip_stream_refused(sqlite_client, case_folder):
    """A .nii.gz whose gzip stream stops early (a cut download) → 422 'truncated'."""
    raw = (case_folder / "image.nii.gz").read_bytes()
    csrf = login(sqlite_client, "coord")
    r = upload(sqlite_client, csrf, _folder_zip(case_folder, {"image.nii.gz": raw[: len(raw) * 2 // 3]}))
    assert r.status_code == 422 and "truncated" in r.json()["error"], r.text


def _damaged_zips(case_folder: Path) -> dict[str, bytes]:
    good = _folder_zip(case_folder)
    bad_crc = bytearray(good)
    off = bad_crc.find(b"PK\x03\x04") + 30 + len("case.yaml") + 2  # into the first entry's data
    bad_crc[off] ^= 0xFF
    enc = bytearray(_folder_zip(case_folder))
    enc[6] |= 0x01  # general purpose flag: encrypted
    cd = enc.rfind(b"PK\x01\x02")
    enc[cd + 8] |= 0x01
    method = bytearray(_folder_zip(case_folder))
    method[8] = 99  # compression method 99 (AES) in the local header
    cd = method.rfind(b"PK\x01\x02")
    method[cd + 10] = 99
    truncated_cd = good[: good.rfind(b"PK\x05\x06") + 10]
    return {"bad CRC": bytes(bad_crc), "encrypted flag": bytes(enc), "unknown method": bytes(method),
            "cut end record": truncated_cd}


def test_malformed_zips_answer_4xx(sqlite_client, case_folder, sqlite_settings):
    """Damaged archives → 422 in words, no server path, no 500 (before: BadZipFile/NotImplementedError → 500)."""
    csrf = login(sqlite_client, "coord")
    for label, data in _damaged_zips(case_folder).items():
        r = upload(sqlite_client, csrf, data, name=f"{label}.zip")
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        assert str(sqlite_settings.data_dir) not in r.text and "Traceback" not in r.text, label
    assert list((sqlite_settings.data_dir / "tmp").iterdir()) == []


def test_messages_do_not_show_server_paths(sqlite_client, sqlite_settings):
    """A case folder without an image: the message names the files, not the server's temp folder."""
    csrf = login(sqlite_client, "coord")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("case.yaml", "patient: {id: X, primary: colorectal}\n")
    r = upload(sqlite_client, csrf, buf.getvalue())
    assert r.status_code == 422
    assert "image" in r.json()["error"]
    assert str(sqlite_settings.data_dir) not in r.json()["error"] and "/tmp" not in r.json()["error"]
