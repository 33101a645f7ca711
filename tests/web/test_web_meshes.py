"""Surface meshes of the viewer (issue 7: "server writes NIfTI/mesh files for it").

Independent references:
- position: the NIfTI overlay niivue reads for the same mask. The mask is written with
  [A1]'s ``write_nifti`` (SimpleITK) and read back with nibabel; the voxel centres of the mask's
  surface are placed with nibabel's RAS affine from that file (``nibabel.affines.apply_affine``),
  not with the LPS→RAS flip of the code under test. Tolerance: one voxel (the largest spacing).
- volume: the voxel count × voxel volume; mesh volume by the divergence theorem; ±10 %
  (marching cubes at 0.5 on a mildly blurred mask: ≈ 1–4 % for these sizes).
- closedness: every edge shared by exactly two triangles (a closed 2-manifold).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy import ndimage
from scipy.spatial import cKDTree

from latplan.imaging.io import write_nifti
from latplan.imaging.meshes import mask_surface_ras_mm, mesh_volume_mm3, write_gifti_mesh
from latplan.imaging.volume import Volume


def _rotation(ax_deg: float, ay_deg: float, az_deg: float) -> np.ndarray:
    a, b, c = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _affine(spacing_ijk_mm: tuple[float, float, float], rotation: np.ndarray, origin_mm: tuple[float, float, float]) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = rotation @ np.diag(spacing_ijk_mm)
    aff[:3, 3] = origin_mm
    return aff


def _surface_centres_ras_from_nifti(mask: Volume, tmp_path: Path) -> np.ndarray:
    """RAS mm of the mask's surface voxel centres, placed by the NIfTI file niivue would read."""
    path = write_nifti(mask.with_array(mask.array.astype(np.uint8)), tmp_path / "mask.nii.gz")
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj) > 0  # nibabel: (i, j, k) array, RAS affine
    surface = arr & ~ndimage.binary_erosion(arr)
    return apply_affine(img.affine, np.argwhere(surface))


def _centroid_ras_from_nifti(mask: Volume, tmp_path: Path) -> np.ndarray:
    path = write_nifti(mask.with_array(mask.array.astype(np.uint8)), tmp_path / "mask_c.nii.gz")
    img = nib.load(str(path))
    return apply_affine(img.affine, np.argwhere(np.asarray(img.dataobj) > 0).mean(axis=0))


def _volume_centroid(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Centroid of the solid a closed mesh encloses (signed tetrahedra from the origin)."""
    v = np.asarray(vertices, dtype=np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    return ((a + b + c) / 4.0 * vol[:, None]).sum(axis=0) / vol.sum()


def _is_closed(faces: np.ndarray) -> bool:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(np.all(counts == 2))


def _ellipsoid(shape: tuple[int, int, int], centre_kji: tuple[float, float, float],
               radii_kji: tuple[float, float, float]) -> np.ndarray:
    k, j, i = np.indices(shape)
    return sum(((g - c) / r) ** 2 for g, c, r in zip((k, j, i), centre_kji, radii_kji, strict=True)) <= 1.0


def _check_against_nifti(mask: Volume, tmp_path: Path) -> None:
    mesh = mask_surface_ras_mm(mask)
    assert mesh is not None and mesh.step_voxels == 1
    voxel_mm = float(mask.spacing_mm.max())
    ref = _surface_centres_ras_from_nifti(mask, tmp_path)
    d_vert, _ = cKDTree(ref).query(mesh.vertices_ras_mm)  # every vertex near the mask's surface
    assert d_vert.max() <= voxel_mm, d_vert.max()
    d_ref, _ = cKDTree(mesh.vertices_ras_mm).query(ref)  # and the whole surface is meshed
    assert d_ref.max() <= voxel_mm, d_ref.max()
    ref_volume_mm3 = float(mask.array.sum()) * mask.voxel_volume_ml * 1000.0
    vol = mesh_volume_mm3(mesh.vertices_ras_mm, mesh.faces)
    assert vol > 0  # outward normals
    assert abs(vol - ref_volume_mm3) <= 0.10 * ref_volume_mm3, (vol, ref_volume_mm3)
    centroid_err = np.linalg.norm(_volume_centroid(mesh.vertices_ras_mm, mesh.faces) - _centroid_ras_from_nifti(mask, tmp_path))
    assert centroid_err <= 0.5 * voxel_mm, centroid_err
    assert _is_closed(mesh.faces)


def test_web_mesh_sphere_axial_grid(tmp_path):
    """A 9 mm ball on a 1 mm axial grid with an LPS origin off zero: position, volume, closedness."""
    mask = Volume(_ellipsoid((30, 32, 34), (14.0, 15.5, 17.2), (9.0, 9.0, 9.0)).astype(np.uint8),
                  _affine((1.0, 1.0, 1.0), np.eye(3), (-120.0, 35.0, -410.0)))
    _check_against_nifti(mask, tmp_path)


@pytest.mark.parametrize("flip", [False, True])
def test_web_mesh_oblique_anisotropic_grid(tmp_path, flip):
    """An ellipsoid on an oblique (30°/-20°/50°), anisotropic (0.8 × 1.3 × 2.5 mm) grid, also with a
    reversed-handedness index→LPS map: the mesh lands where the NIfTI overlay puts the mask."""
    rot = _rotation(30.0, -20.0, 50.0)
    if flip:
        rot = rot @ np.diag([1.0, -1.0, 1.0])
    mask = Volume(_ellipsoid((24, 40, 50), (11.0, 18.0, 27.0), (5.0, 10.0, 14.0)).astype(np.uint8),
                  _affine((0.8, 1.3, 2.5), rot, (40.0, -75.0, 130.0)))
    _check_against_nifti(mask, tmp_path)


def test_web_mesh_closed_at_grid_edge(tmp_path):
    """A mask cut by the grid's edge still gives a closed surface (the mask is padded)."""
    arr = _ellipsoid((20, 20, 20), (0.0, 10.0, 10.0), (6.0, 6.0, 6.0))  # half a ball on slice 0
    mesh = mask_surface_ras_mm(Volume(arr.astype(np.uint8), np.eye(4)))
    assert mesh is not None and _is_closed(mesh.faces)
    ref = float(arr.sum())
    assert abs(mesh_volume_mm3(mesh.vertices_ras_mm, mesh.faces) - ref) <= 0.10 * ref


def test_web_mesh_budget_and_gifti_round_trip(tmp_path):
    """A liver-sized mask is meshed within the triangle budget, the GIfTI reads back identically
    with nibabel, declares scanner RAS space and stays well below 1 MB."""
    arr = _ellipsoid((90, 110, 130), (45.0, 55.0, 65.0), (40.0, 50.0, 60.0))
    mask = Volume(arr.astype(np.uint8), _affine((1.5, 1.5, 2.0), np.eye(3), (0.0, 0.0, 0.0)))
    mesh = mask_surface_ras_mm(mask, max_faces=20_000)
    assert mesh is not None and mesh.step_voxels > 1 and len(mesh.faces) <= 20_000
    ref = float(arr.sum()) * mask.voxel_volume_ml * 1000.0
    assert abs(mesh_volume_mm3(mesh.vertices_ras_mm, mesh.faces) - ref) <= 0.10 * ref
    path = write_gifti_mesh(mesh, tmp_path / "liver.gii", "liver")
    assert path.stat().st_size < 1_000_000
    img = nib.load(str(path))
    coords, faces = img.agg_data(("pointset", "triangle"))
    np.testing.assert_array_equal(coords, mesh.vertices_ras_mm)
    np.testing.assert_array_equal(faces, mesh.faces)
    assert img.darrays[0].coordsys.dataspace == nib.nifti1.xform_codes.code["scanner"]
    assert 'Encoding="GZipBase64Binary"' in path.read_text()  # the encoding niivue's readGII inflates


def test_web_mesh_empty_mask_gives_none():
    assert mask_surface_ras_mm(Volume(np.zeros((4, 5, 6), np.uint8), np.eye(4))) is None


def test_web_viewer_index_lists_meshes(tmp_path):
    """write_viewer_files: one mesh per lesion, per structure group, per zone and per dose (100 %)."""
    from webtest_helpers import small_case

    from latplan.planning.types import TreatmentPlan
    from latplan.web.viewer import write_viewer_files

    case = small_case(lesions=2)
    les = case.lesion_mask("lesion_1")
    zone = les.with_array(ndimage.binary_dilation(les.array, iterations=2).astype(np.uint8))
    dose = les.with_array(np.where(ndimage.binary_dilation(les.array, iterations=1), 30.0, 5.0).astype(np.float32))
    plans = [TreatmentPlan("mwa", "lesion_1", {}, zone=zone),
             TreatmentPlan("ibt", "lesion_1", {}, dose=dose, prescription_gy=20.0)]
    index = write_viewer_files(case, plans, tmp_path / "viewer")
    by_kind: dict[str, list[str]] = {}
    for m in index["meshes"]:
        by_kind.setdefault(m["kind"], []).append(m["name"])
        img = nib.load(str(tmp_path / "viewer" / m["url"]))
        assert len(img.agg_data("triangle")) == m["faces"] > 0
    assert sorted(by_kind["lesion"]) == ["lesion_1", "lesion_2"]
    assert by_kind["structure"] == ["liver"]
    assert len(by_kind["zone"]) == 1 and len(by_kind["isodose"]) == 1
    # the 100 % isodose surface encloses the voxels at ≥ 20 Gy (reference: the dose grid itself)
    iso = next(m for m in index["meshes"] if m["kind"] == "isodose")
    coords, faces = nib.load(str(tmp_path / "viewer" / iso["url"])).agg_data(("pointset", "triangle"))
    ref = float((dose.array >= 20.0).sum()) * dose.voxel_volume_ml * 1000.0
    assert abs(mesh_volume_mm3(coords, faces) - ref) <= 0.10 * ref
