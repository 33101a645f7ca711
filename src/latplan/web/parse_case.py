"""Parse an extracted case folder and print a one-line JSON summary (run as a subprocess).

``python -m latplan.web.parse_case FOLDER`` is what :func:`latplan.web.uploads.parse_in_subprocess`
runs under memory and time limits. It never raises: errors become ``{"ok": false, "error": ...}``
with the message of the :class:`~latplan.errors.LatplanError` that explains the problem.

Before handing the folder to :func:`latplan.imaging.case_folder.load_case_folder` ([A1]) it
checks every DICOM file for truncation (pixel data shorter than rows × columns × frames ×
bytes per sample) and every NIfTI/NRRD/MHA file with the reader's integrity check (file size, or
decompressed size of a .nii.gz, shorter than the header's voxels × bytes per voxel), so a
truncated upload is named precisely.
Error messages name files by their path in the zip, never by the server's folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from latplan.errors import CaseFolderError, DicomError, LatplanError
from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.integrity import check_header_before_reading
from latplan.web.uploads import check_case_paths


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def check_dicom_files(folder: Path) -> int:
    """Read every DICOM file; raise DicomError naming the first truncated or unreadable one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    n = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if not _is_dicom(path):
            continue
        n += 1
        rel = path.relative_to(folder).as_posix()
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
            raise DicomError(f"DICOM file {rel} cannot be read ({type(exc).__name__}: {exc}); it may be truncated.") from exc
        if "PixelData" in ds and "Rows" in ds and "Columns" in ds:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if ts is not None and getattr(ts, "is_compressed", False):
                continue
            bits = int(getattr(ds, "BitsAllocated", 16) or 16)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            expected = int(ds.Rows) * int(ds.Columns) * frames * samples * bits // 8
            found = len(ds.PixelData)
            if found < expected:
                raise DicomError(
                    f"DICOM file {rel} is truncated: its pixel data holds {found} bytes, {expected} expected "
                    f"({ds.Rows}×{ds.Columns}×{frames} at {bits} bits); send the complete file."
                )
    return n


IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha")


def check_image_files(folder: Path) -> int:
    """Check every NIfTI/NRRD/MHA file's header against its size before any voxel is read.

    Uses the reader's own check (:func:`latplan.imaging.integrity.check_header_before_reading`:
    file size, or streamed gunzip size, against the header's voxels × type size; spacing; memory)
    on *every* image file of the upload, not only those the case names, so a truncated upload is
    refused at once with the file named.
    """
    n = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)):
        n += 1
        check_header_before_reading(path)
    return n


def summarise(folder: Path) -> dict[str, Any]:
    if not (folder / "case.yaml").is_file():
        names = sorted(p.name for p in folder.iterdir())[:8]
        raise CaseFolderError(
            "case.yaml is missing at the top of the zip (found: " + (", ".join(names) or "nothing") + "); "
            "a case folder needs case.yaml (patient), an image (image.nii.gz or dicom/) and labels."
        )
    check_case_paths(folder)
    check_dicom_files(folder)
    check_image_files(folder)
    case = load_case_folder(folder)
    image = case.image
    return {
        "patient_id": str(case.patient.id),
        "primary": str(case.patient.primary.value).lower(),
        "lesion_ids": list(case.lesion_ids),
        "structures": list(case.structure_names()),
        "shape_kji": [int(x) for x in image.array.shape],
        "spacing_mm": [round(float(x), 4) for x in image.spacing_mm],
        "source": "dicom" if (folder / "dicom").is_dir() else "nifti",
        "warnings": [] if case.lesion_ids else ["no lesion is labelled: planning will have nothing to plan."],
    }


def scrub(message: str, folder: Path) -> str:
    """``message`` without the server's folder names (the user knows the files by their zip names)."""
    for root in (str(folder.resolve()), str(folder)):
        message = message.replace(root + "/", "").replace(root, "the uploaded folder")
    return message


def main(argv: list[str]) -> int:
    folder = Path(argv[1])
    try:
        out: dict[str, Any] = {"ok": True, "case": summarise(folder)}
    except LatplanError as exc:
        out = {"ok": False, "error": scrub(str(exc), folder)}
    except MemoryError:
        out = {"ok": False, "error": "reading the case ran out of memory (the image is too large for this server)."}
    except Exception as exc:
        out = {"ok": False, "error": scrub(f"the case could not be read ({type(exc).__name__}: {exc}).", folder)}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
