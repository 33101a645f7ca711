"""Path confinement: a case folder may only name files inside itself.

Why: ``case.yaml`` is user input (also uploaded through the web app). ``image: /etc/passwd``,
``labels: ../../other-patient/labels.nii.gz`` or a symlink pointing out of the folder would make
latplan read (and hash, and show) a file the author of the case folder should not reach.
Relative names without ``..``, resolving (symlinks followed) inside the folder, are the only
ones accepted; anything else is a :class:`~latplan.imaging.errors.PathOutsideCaseError`.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from latplan.imaging.errors import PathOutsideCaseError

__all__ = ["confine", "require_inside"]


def require_inside(folder: Path, path: Path, what: str) -> Path:
    """Raise unless ``path`` (symlinks resolved) lies inside ``folder``; return the resolved path."""
    root = folder.resolve()
    target = path.resolve()
    if target != root and root not in target.parents:
        raise PathOutsideCaseError(
            f"{what} {path} resolves to {target}, outside the case folder {root} (a symlink leaving the folder). "
            "Copy the file into the case folder instead of linking to it."
        )
    if path.is_dir():
        for sub in path.rglob("*"):
            if sub.is_symlink():
                resolved = sub.resolve()
                if root not in resolved.parents:
                    raise PathOutsideCaseError(
                        f"{what}: {sub} is a symlink to {resolved}, outside the case folder {root}. "
                        "Copy the file into the case folder instead of linking to it."
                    )
    return target


def confine(folder: Path, name: object, what: str, source: str = "case.yaml") -> Path:
    """``folder / name`` for a relative name inside ``folder``; absolute paths and ``..`` are refused."""
    if not isinstance(name, str) or not name.strip():
        raise PathOutsideCaseError(
            f"{source}: {what} must be a file name inside the case folder (e.g. 'image.nii.gz'); got {name!r}."
        )
    text = name.strip()
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or text.startswith("~"):
        raise PathOutsideCaseError(
            f"{source}: {what} {text!r} is an absolute path; name a file inside the case folder {folder} "
            "(relative, e.g. 'image.nii.gz') and copy the file there."
        )
    if ".." in posix.parts or ".." in windows.parts:
        raise PathOutsideCaseError(
            f"{source}: {what} {text!r} leaves the case folder through '..'; name a file inside {folder} "
            "and copy the file there."
        )
    path = folder / posix
    if path.exists() or path.is_symlink():
        require_inside(folder, path, what)
    return path
