"""Fixed anatomy of the digital liver phantom: shapes, vessel trees, label values, intensities.

Everything here is in DICOM patient LPS millimetres: +x = patient's Left, +y = Posterior,
+z = Superior. The liver therefore lies at negative x (patient's right), the stomach and
spleen at positive x, the spine posterior (+y). The origin is roughly the centre of the
abdomen at the level of the portal bifurcation. See docs/phantom.md for the picture.

Why fixed constants and not a statistical shape model: tests need to know the truth
(vessel calibres, segment planes) exactly, and the demo cases must be reproducible. The
seed only drives image noise and lobulated lesion shapes.

Vessels are tubes along polylines with one radius per node (linear taper between
nodes), so the built calibre at any point is known exactly (``2 × radius``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------------------------------------
# field of view (mm, LPS) — voxel centres run from the lower to (at most) the upper bound
# ---------------------------------------------------------------------------------------------
FOV_LO_MM = np.array([-160.0, -115.0, -100.0])
FOV_HI_MM = np.array([160.0, 115.0, 145.0])

# ---------------------------------------------------------------------------------------------
# label values (one label per voxel; the liver is the union of its segments)
# ---------------------------------------------------------------------------------------------
LABELS: dict[str, int] = {
    "body": 1,
    "ribs": 2,
    "spine": 3,
    "spinal_cord": 4,
    "lung_right": 5,
    "lung_left": 6,
    "diaphragm": 7,
    "heart": 8,
    "aorta": 9,
    "inferior_vena_cava": 10,
    "portal_vein": 11,
    "hepatic_artery": 12,
    "hepatic_vein_right": 13,
    "hepatic_vein_middle": 14,
    "hepatic_vein_left": 15,
    "bile_duct": 16,
    "gallbladder": 17,
    "stomach": 18,
    "duodenum": 19,
    "colon": 20,
    "kidney_right": 21,
    "spleen": 22,
    "kidney_left": 23,
    "small_bowel": 24,
    "liver": 30,  # used only when the spec asks for an unsegmented liver
    "liver_segment_1": 31,
    "liver_segment_2": 32,
    "liver_segment_3": 33,
    "liver_segment_4a": 34,
    "liver_segment_4b": 35,
    "liver_segment_5": 36,
    "liver_segment_6": 37,
    "liver_segment_7": 38,
    "liver_segment_8": 39,
}
#: first label value of lesions (lesion n of the spec gets LESION_LABEL_BASE + n)
LESION_LABEL_BASE = 100
SEGMENTS = ("1", "2", "3", "4a", "4b", "5", "6", "7", "8")
SEGMENT_LABELS = {s: LABELS[f"liver_segment_{s}"] for s in SEGMENTS}
LIVER_LABELS = (LABELS["liver"], *SEGMENT_LABELS.values())
#: vessels and ducts that run inside the liver (a lesion may sit next to them, never on large ones)
INTRAHEPATIC_TUBES = ("portal_vein", "hepatic_artery", "hepatic_vein_right", "hepatic_vein_middle",
                      "hepatic_vein_left", "bile_duct")

#: CT-like intensities (HU), portal-venous phase; rendering choices for a synthetic phantom
INTENSITY_HU: dict[str, float] = {
    "air": -1000.0, "body": -100.0, "muscle": 40.0, "ribs": 400.0, "spine": 350.0, "spinal_cord": 35.0,
    "lung_right": -800.0, "lung_left": -800.0, "diaphragm": 45.0, "heart": 45.0, "aorta": 150.0,
    "inferior_vena_cava": 140.0, "portal_vein": 160.0, "hepatic_artery": 170.0, "hepatic_vein_right": 150.0,
    "hepatic_vein_middle": 150.0, "hepatic_vein_left": 150.0, "bile_duct": 10.0, "gallbladder": 10.0,
    "stomach": 20.0, "duodenum": 25.0, "colon": -40.0, "small_bowel": 30.0, "kidney_right": 160.0, "kidney_left": 160.0, "spleen": 110.0,
    "liver": 60.0, "lesion": 35.0,
}
NOISE_SIGMA_HU = 10.0

# ---------------------------------------------------------------------------------------------
# body, skeleton
# ---------------------------------------------------------------------------------------------
BODY_SEMI_MM = (150.0, 105.0)           # elliptic cylinder, semi-axes along x, y
MUSCLE_RHO = 0.93                        # outer body wall (rho = normalised elliptic radius)
RIB_RHO = (0.87, 0.93)                   # rib ring
RIBCAGE_RHO = 0.86                       # lungs and liver stay inside
RIB_LEVELS_Z_MM = tuple(range(-40, 150, 22))
RIB_HALF_WIDTH_MM = 5.0
RIB_SLOPE = 0.2                          # ribs run caudally towards the front: z = z0 + slope * y
SPINE_CENTRE_XY = (0.0, 72.0)
SPINE_RADIUS_MM = 16.0
CANAL_CENTRE_XY = (0.0, 96.0)
CANAL_RADIUS_MM = 7.0
ARCH_RADIUS_MM = 13.0
CORD_RADIUS_MM = 5.0

# ---------------------------------------------------------------------------------------------
# organs as ellipsoids: centre (x, y, z), semi-axes (x, y, z)
# ---------------------------------------------------------------------------------------------
LIVER_RIGHT = ((-50.0, 8.0, 5.0), (78.0, 72.0, 70.0))
LIVER_LEFT = ((25.0, -28.0, 25.0), (62.0, 36.0, 36.0))
STOMACH = ((60.0, 8.0, -15.0), (30.0, 30.0, 42.0))
SPLEEN = ((92.0, 52.0, 20.0), (20.0, 24.0, 45.0))
KIDNEY_RIGHT = ((-72.0, 58.0, -50.0), (26.0, 22.0, 50.0))
KIDNEY_LEFT = ((72.0, 58.0, -60.0), (24.0, 22.0, 48.0))
HEART = ((15.0, -18.0, 118.0), (55.0, 45.0, 40.0))
LUNG_RIGHT = ((-75.0, 18.0, 150.0), (62.0, 80.0, 125.0))
LUNG_LEFT = ((75.0, 18.0, 150.0), (62.0, 80.0, 125.0))
LUNG_MIN_Z_MM = -10.0
GALLBLADDER = ((-42.0, -36.0, -35.0), (14.0, 14.0, 28.0))
DIAPHRAGM_THICKNESS_MM = 5.0

# ---------------------------------------------------------------------------------------------
# Couinaud segments: planes through the IVC axis (hepatic veins), the portal plane, caudate
# ---------------------------------------------------------------------------------------------
IVC_XY = (-18.0, 45.0)
IVC_RADIUS_MM = 10.0                      # 20 mm IVC
IVC_Z_RANGE_MM = (-100.0, 85.0)
AORTA_XY = (20.0, 40.0)
AORTA_RADIUS_MM = 11.0
PORTAL_PLANE_Z_MM = 3.0                   # superior (2, 4a, 7, 8) vs inferior (3, 4b, 5, 6)
#: axial directions (x, y) from the IVC axis of the vertical hepatic-vein planes
DIR_RIGHT = (-1.0, -0.3)                  # right hepatic vein: right anterior | right posterior
DIR_MIDDLE = (-0.3, -1.0)                 # middle hepatic vein (Cantlie line): right | left liver
DIR_UMBILICAL = (0.45, -1.0)              # umbilical fissure: segment 4 | left lateral section
#: plane of the left hepatic vein: left lateral section superior-posterior (2) | inferior-anterior (3)
LHV_PLANE_POINT = (25.0, 0.0, 42.0)
LHV_PLANE_NORMAL = (0.38, 0.31, 0.905)
CAUDATE_CENTRE_XY = (-5.0, 28.0)
CAUDATE_RADIUS_MM = 16.0
CAUDATE_Z_RANGE_MM = (-25.0, 40.0)


def _angle_deg(d: tuple[float, float]) -> float:
    return float(np.degrees(np.arctan2(d[1], d[0])))


THETA_RIGHT = _angle_deg(DIR_RIGHT)
THETA_MIDDLE = _angle_deg(DIR_MIDDLE)
THETA_UMBILICAL = _angle_deg(DIR_UMBILICAL)


@dataclass(frozen=True)
class Tube:
    """A vessel/duct: polyline nodes (n, 3) in LPS mm with one radius (mm) per node."""

    name: str
    nodes_mm: tuple[tuple[float, float, float], ...]
    radii_mm: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.nodes_mm) != len(self.radii_mm) or len(self.nodes_mm) < 2:
            raise ValueError(f"tube {self.name}: needs ≥ 2 nodes and one radius per node")

    def segments(self) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
        p = np.asarray(self.nodes_mm, float)
        return [(p[i], p[i + 1], self.radii_mm[i], self.radii_mm[i + 1]) for i in range(len(p) - 1)]


def _hv_nodes(direction: tuple[float, float], s_mm: tuple[float, ...], z0: float, slope: float) -> tuple:
    d = np.asarray(direction, float)
    d /= np.linalg.norm(d)
    return tuple((IVC_XY[0] + s * d[0], IVC_XY[1] + s * d[1], z0 - slope * s) for s in s_mm)


#: hepatic veins: ≈ 10–11 mm where they leave the IVC, tapering to ≤ 3 mm (issue [A])
HV_S_MM = (4.0, 12.0, 35.0, 60.0, 82.0, 100.0)
HEPATIC_VEINS = (
    Tube("hepatic_vein_right", _hv_nodes(DIR_RIGHT, HV_S_MM, 52.0, 0.4), (5.5, 5.4, 4.2, 3.0, 2.0, 1.3)),
    Tube("hepatic_vein_middle", _hv_nodes(DIR_MIDDLE, (*HV_S_MM[:-1], 92.0), 52.0, 0.4),
         (5.2, 5.1, 4.0, 2.9, 2.0, 1.3)),
    Tube("hepatic_vein_left", ((-14.0, 42.0, 52.0), (-9.0, 38.0, 50.0), (5.0, 20.0, 46.0), (25.0, 0.0, 42.0),
                               (45.0, -12.0, 37.0), (65.0, -20.0, 32.0)), (5.0, 5.0, 4.0, 3.2, 2.2, 1.3)),
)

#: portal vein trunk and sectoral branches; segmental branches are added towards segment centres
PV_HILUM = (-22.0, 2.0, 2.0)
PV_R1 = (-45.0, 4.0, 4.0)
PV_RA = (-60.0, -18.0, 4.0)
PV_RP = (-80.0, 35.0, 3.0)
PV_L1 = (-2.0, -10.0, 5.0)
PV_U = (18.0, -22.0, 6.0)
PORTAL_TRUNK = (
    Tube("portal_vein", ((10.0, 12.0, -75.0), (-5.0, 8.0, -35.0), PV_HILUM), (7.0, 6.8, 6.5)),   # main PV 13–14 mm
    Tube("portal_vein", (PV_HILUM, PV_R1), (6.0, 5.5)),
    Tube("portal_vein", (PV_R1, PV_RA), (5.0, 4.5)),
    Tube("portal_vein", (PV_R1, PV_RP), (5.0, 4.5)),
    Tube("portal_vein", (PV_HILUM, PV_L1, PV_U), (5.0, 5.0, 4.5)),
)
#: segmental branch: parent node, radius at parent (mm), waypoints; it ends at the segment centre
#: with radius PV_TIP_RADIUS_MM (≤ 3 mm calibre). Segment 2's branch detours anteriorly so it
#: crosses the left hepatic vein plane well away from the vein.
PORTAL_BRANCH_FROM: dict[str, tuple[tuple[float, float, float], float, tuple[tuple[float, float, float], ...]]] = {
    "1": (PV_HILUM, 1.8, ()), "2": (PV_U, 3.0, ((38.0, -32.0, 44.0),)), "3": (PV_U, 3.0, ()),
    "4a": (PV_L1, 3.0, ()), "4b": (PV_L1, 3.0, ()),
    "5": (PV_RA, 3.5, ()), "8": (PV_RA, 3.5, ()), "6": (PV_RP, 3.5, ()), "7": (PV_RP, 3.5, ()),
}
PV_TIP_RADIUS_MM = 1.3
HEPATIC_ARTERY = (
    Tube("hepatic_artery", ((20.0, 32.0, -45.0), (10.0, -4.0, -35.0), (-4.0, -4.0, -22.0), (-12.0, -6.0, -10.0),
                            (-24.0, -10.0, 2.0), (-30.0, -12.0, 6.0)), (3.0, 2.6, 2.4, 2.2, 2.0, 1.8)),
    Tube("hepatic_artery", ((-4.0, -4.0, -22.0), (10.0, -14.0, -8.0), (20.0, -30.0, 0.0)), (1.8, 1.6, 1.4)),
)
BILE_DUCTS = (
    Tube("bile_duct", ((-8.0, 3.0, -75.0), (-25.0, -5.0, -25.0), (-34.0, -8.0, -4.0)), (3.5, 3.5, 3.2)),
    Tube("bile_duct", ((-34.0, -8.0, -4.0), (-42.0, -14.0, 10.0)), (2.2, 1.8)),
    Tube("bile_duct", ((-30.0, -7.0, -8.0), (-20.0, -18.0, -12.0)), (1.8, 1.5)),
)
DUODENUM = Tube("duodenum", ((40.0, -20.0, -40.0), (-5.0, -25.0, -55.0), (-40.0, -5.0, -68.0),
                             (-42.0, 15.0, -95.0), (10.0, 20.0, -98.0)), (11.0,) * 5)
SMALL_BOWEL = Tube("small_bowel", ((15.0, -25.0, -65.0), (45.0, -30.0, -70.0), (55.0, -10.0, -78.0), (30.0, 0.0, -72.0),
                                   (5.0, -15.0, -80.0), (25.0, -30.0, -92.0)), (10.0,) * 6)
COLON = Tube("colon", ((-95.0, 30.0, -100.0), (-100.0, -5.0, -80.0), (-60.0, -60.0, -84.0), (40.0, -65.0, -86.0),
                       (95.0, -15.0, -80.0), (100.0, 30.0, -100.0)), (18.0,) * 6)


def ivc_tube() -> Tube:
    z0, z1 = IVC_Z_RANGE_MM
    return Tube("inferior_vena_cava", ((*IVC_XY, z0), (*IVC_XY, z1)), (IVC_RADIUS_MM, IVC_RADIUS_MM))


def aorta_tube() -> Tube:
    return Tube("aorta", ((*AORTA_XY, FOV_LO_MM[2] - 5), (*AORTA_XY, FOV_HI_MM[2] + 5)), (AORTA_RADIUS_MM,) * 2)


# ---------------------------------------------------------------------------------------------
# implicit functions evaluated on broadcastable coordinate arrays (X, Y, Z in mm)
# ---------------------------------------------------------------------------------------------
def ellipsoid_q(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, centre: tuple, semi: tuple, grow_mm: float = 0.0):
    """Normalised quadric value (≤ 1 inside) of an axis-aligned ellipsoid grown by ``grow_mm``."""
    (cx, cy, cz), (a, b, c) = centre, semi
    return ((X - cx) / (a + grow_mm)) ** 2 + ((Y - cy) / (b + grow_mm)) ** 2 + ((Z - cz) / (c + grow_mm)) ** 2


def body_rho(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Normalised elliptic radius of the body cross-section (1 = skin)."""
    return np.sqrt((X / BODY_SEMI_MM[0]) ** 2 + (Y / BODY_SEMI_MM[1]) ** 2)


def liver_inside(X: np.ndarray, Y: np.ndarray, Z: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
    """Liver envelope (before other organs carve it): union of the two lobes inside the rib cage."""
    q = np.minimum(ellipsoid_q(X, Y, Z, *LIVER_RIGHT, grow_mm), ellipsoid_q(X, Y, Z, *LIVER_LEFT, grow_mm))
    return (q <= 1.0) & (body_rho(X, Y) < RIBCAGE_RHO + grow_mm / BODY_SEMI_MM[1])


def couinaud_index(X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Index into :data:`SEGMENTS` (0..8) of each point, assuming the point lies in the liver."""
    X, Y, Z = np.broadcast_arrays(X, Y, Z)
    dx, dy = X - IVC_XY[0], Y - IVC_XY[1]
    theta = np.degrees(np.arctan2(dy, dx))
    sup = Z >= PORTAL_PLANE_Z_MM
    right_post = (theta > 90.0) | (theta < THETA_RIGHT)
    right_ant = (theta >= THETA_RIGHT) & (theta < THETA_MIDDLE)
    seg4 = (theta >= THETA_MIDDLE) & (theta < THETA_UMBILICAL)
    p = np.asarray(LHV_PLANE_POINT)
    n = np.asarray(LHV_PLANE_NORMAL)
    upper_left = (X - p[0]) * n[0] + (Y - p[1]) * n[1] + (Z - p[2]) * n[2] > 0
    idx = np.where(upper_left, 1, 2)                               # 2 | 3 (left lateral section)
    idx = np.where(seg4, np.where(sup, 3, 4), idx)                 # 4a | 4b
    idx = np.where(right_ant, np.where(sup, 8, 5), idx)            # 8 | 5
    idx = np.where(right_post, np.where(sup, 7, 6), idx)           # 7 | 6
    cx, cy = CAUDATE_CENTRE_XY
    zc = (Z > CAUDATE_Z_RANGE_MM[0]) & (Z < CAUDATE_Z_RANGE_MM[1])
    caudate = zc & ((np.hypot(X - cx, Y - cy) < CAUDATE_RADIUS_MM) | ((X > IVC_XY[0] - 2) & (Y > IVC_XY[1] - 10)))
    return np.where(caudate, 0, idx).astype(np.int8)
