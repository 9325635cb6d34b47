"""Face analysis for real photos (Sec. 4.2): detection, 68 landmarks, alignment, equalisation and head pose.

dlib finds the faces (its HOG detector, or its CNN one) and their 68 landmarks; OpenCV maps the eye and mouth
centres onto a fixed template by a similarity transform (rotation, scale, shift: the paper's "rotation aligned
and cropped"), equalises the crop's histogram and solves the head pose by PnP of the landmarks against a 3-D mean
face. Both come with the optional extra ``pip install 'fsx[faces]'`` (dlib through the ``dlib-bin`` wheel, its
trained models from ``face-recognition-models``, ``opencv-python-headless``).

Pose follows SynthFaces' convention (``fsx.data.render.rotation_matrix``), in degrees: yaw > 0 turns the nose
to the image's right, pitch > 0 lifts it, roll > 0 turns the face clockwise in the picture.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import attrs
import numpy as np

EQUALIZE = ("off", "luminance", "clahe")
DETECTORS = ("hog", "cnn")
# Where the eye centres and the mouth centre land in an aligned crop, as fractions of its side: a framing close to
# SynthFaces' (the head with some hair and background around it).
TEMPLATE = np.array([[0.375, 0.45], [0.625, 0.45], [0.50, 0.735]])
# The box dlib's detector would draw around a face aligned on TEMPLATE (x, y, w, h as fractions of the crop side;
# measured on detections: about 2.1x the eye-mouth distance wide, its top 0.65x that distance above the eyes):
# the landmark and descriptor models read an aligned or decoded face from it without detecting it again.
TEMPLATE_BOX = (0.195, 0.267, 0.61, 0.61)
LEFT_EYE, RIGHT_EYE, MOUTH = slice(36, 42), slice(42, 48), slice(48, 60)  # dlib's 68-point indices (image left/right)
# A 3-D mean face for PnP, in millimetres, in the head frame of a camera-facing head: x to the image's right,
# y down, z away from the camera (the nose tip is nearest). Landmark index -> point; the jaw line is left out
# because its points slide along the cheek as the head turns. Rounded adult anthropometric averages.
MEAN_FACE = {
    17: (-55.0, -48.0, 45.0), 21: (-15.0, -52.0, 28.0), 22: (15.0, -52.0, 28.0), 26: (55.0, -48.0, 45.0),
    27: (0.0, -40.0, 22.0), 30: (0.0, 0.0, 0.0), 31: (-13.0, 8.0, 18.0), 33: (0.0, 12.0, 12.0), 35: (13.0, 8.0, 18.0),
    36: (-45.0, -35.0, 38.0), 39: (-15.0, -35.0, 30.0), 42: (15.0, -35.0, 30.0), 45: (45.0, -35.0, 38.0),
    48: (-25.0, 35.0, 30.0), 51: (0.0, 25.0, 15.0), 54: (25.0, 35.0, 30.0), 57: (0.0, 45.0, 20.0),
    8: (0.0, 75.0, 30.0),
}
DETECT_SIDE = 160  # pictures smaller than this are enlarged before detection (dlib's HOG finds faces of >= ~80 px)


class FacesExtraMissing(ImportError):
    """The optional face libraries are not installed."""


def _import():
    try:
        import cv2
        import dlib
    except ImportError as exc:
        raise FacesExtraMissing(f"face preparation needs the optional extra: pip install 'fsx[faces]' ({exc})") from None
    return cv2, dlib


def model_file(name: str) -> Path:
    """A model file of the ``face-recognition-models`` package, found without importing it (its ``__init__``
    imports ``pkg_resources``, which setuptools >= 81 no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FacesExtraMissing("face preparation needs the optional extra: pip install 'fsx[faces]' "
                                "(the package face-recognition-models is not installed)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise FacesExtraMissing(f"{path}: missing from face-recognition-models; reinstall it")
    return path


@attrs.frozen
class Face:
    """One analysed face: the aligned crop (size, size, 3) uint8, its 68 landmarks in crop pixels, the head
    pose in degrees, the detector's score (NaN when the source's box was used) and how many faces the picture had."""

    crop: np.ndarray
    landmarks: np.ndarray
    pose: tuple[float, float, float]
    score: float
    faces: int


class Rejected(Exception):
    """A picture without a usable face; ``reason`` is one of ``REASONS``."""

    REASONS = ("no face", "too small", "landmarks off the image")

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / max(aw * ah + bw * bh - inter, 1e-9)


def euler_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a camera-frame rotation (OpenCV: z into the scene), in the convention of
    ``fsx.data.render.rotation_matrix`` (R = Rz(roll) Rx(pitch) Ry(yaw), z towards the camera)."""
    flip = np.diag([1.0, 1.0, -1.0])
    rs = flip @ r @ flip  # the same rotation seen in a frame whose z points to the camera
    pitch = math.asin(max(-1.0, min(1.0, rs[2, 1])))
    yaw = math.atan2(-rs[2, 0], rs[2, 2])
    roll = math.atan2(-rs[0, 1], rs[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


class FaceAnalyser:
    """Detect, align, equalise and measure the pose of the face in a picture (one instance per process: the
    landmark model takes ~100 MB and a second to load)."""

    def __init__(self, size: int = 128, equalize: str = "luminance", detector: str = "hog", min_face: int = 40,
                 min_score: float = 0.5):
        if equalize not in EQUALIZE:
            raise ValueError(f"equalize must be one of {', '.join(EQUALIZE)}, got {equalize!r}")
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        self.cv2, dlib = _import()
        self.size, self.equalize, self.detector_name = size, equalize, detector
        self.min_face, self.min_score = min_face, min_score
        self._dlib = dlib
        if detector == "hog":
            self._detector = dlib.get_frontal_face_detector()
        else:
            self._detector = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        self._landmarks = dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))

    def detect(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Faces as ((x, y, w, h), score), scores >= min_score."""
        if self.detector_name == "hog":
            rects, scores, _ = self._detector.run(rgb, 0, 0.0)
            found = list(zip(rects, scores))
        else:
            found = [(d.rect, d.confidence) for d in self._detector(rgb, 0)]
        return [((r.left(), r.top(), r.width(), r.height()), float(s)) for r, s in found if s >= self.min_score]

    def _shape(self, rgb: np.ndarray, box):
        x, y, w, h = (int(round(v)) for v in box)
        return self._landmarks(rgb, self._dlib.rectangle(x, y, x + w, y + h))

    def landmarks(self, rgb: np.ndarray, box) -> np.ndarray:
        """(68, 2) landmark positions in the picture's pixels, for the face in ``box`` (x, y, w, h)."""
        return np.array([(p.x, p.y) for p in self._shape(rgb, box).parts()], dtype=np.float64)

    def pose(self, points: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
        """Head pose (yaw, pitch, roll) in degrees from the landmarks, by PnP against ``MEAN_FACE``."""
        idx = list(MEAN_FACE)
        obj = np.array([MEAN_FACE[i] for i in idx], dtype=np.float64)
        img = points[idx].astype(np.float64)
        f = float(max(width, height))
        camera = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)
        # Start from a frontal face in front of the camera at the distance its size implies: without a start the
        # solver can land on the mirror solution behind the camera.
        tz = f * np.ptp(obj[:, 0]) / max(np.ptp(img[:, 0]), 1.0)
        centre = img.mean(0)
        tvec = np.array([[(centre[0] - width / 2) * tz / f], [(centre[1] - height / 2) * tz / f], [tz]])
        ok, rvec, tvec = self.cv2.solvePnP(obj, img, camera, np.zeros(4), rvec=np.zeros((3, 1)), tvec=tvec,
                                           useExtrinsicGuess=True, flags=self.cv2.SOLVEPNP_ITERATIVE)
        if not ok or tvec[2, 0] <= 0:
            raise Rejected("landmarks off the image")
        return euler_from_rotation(self.cv2.Rodrigues(rvec)[0])

    def _equalize(self, crop: np.ndarray) -> np.ndarray:
        if self.equalize == "off":
            return crop
        ycc = self.cv2.cvtColor(crop, self.cv2.COLOR_RGB2YCrCb)
        if self.equalize == "luminance":
            ycc[..., 0] = self.cv2.equalizeHist(ycc[..., 0])
        else:
            ycc[..., 0] = self.cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(ycc[..., 0])
        return self.cv2.cvtColor(ycc, self.cv2.COLOR_YCrCb2RGB)

    def analyse(self, rgb: np.ndarray, box=None) -> Face:
        """The face of ``rgb`` (H, W, 3 uint8): the one ``box`` (x, y, w, h) points at when given, else the
        largest. Raises :class:`Rejected` with the reason when there is none to use."""
        cv2 = self.cv2
        scale = 1.0
        if min(rgb.shape[:2]) < DETECT_SIDE:  # small pictures: enlarge so that the detector can see the face
            scale = DETECT_SIDE / min(rgb.shape[:2])
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                             interpolation=cv2.INTER_CUBIC)
        faces = self.detect(rgb)
        if box is not None:
            box = tuple(v * scale for v in box)
            overlapping = [f for f in faces if _iou(f[0], box) > 0.3]
            chosen = max(overlapping, key=lambda f: _iou(f[0], box)) if overlapping else (box, float("nan"))
        elif faces:
            chosen = max(faces, key=lambda f: f[0][2] * f[0][3])
        else:
            raise Rejected("no face")
        (x, y, w, h), score = chosen
        if min(w, h) / scale < self.min_face and not (box is not None and math.isnan(score)):
            raise Rejected("too small")
        points = self.landmarks(rgb, (x, y, w, h))
        height, width = rgb.shape[:2]
        outside = (points[:, 0] < 0) | (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
        if outside.sum() > 6:  # a face cut by the picture's edge: the points there are guesses
            raise Rejected("landmarks off the image")
        anchors = np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0), points[MOUTH].mean(0)])
        matrix, _ = cv2.estimateAffinePartial2D(anchors.astype(np.float32),
                                                (TEMPLATE * self.size).astype(np.float32), method=cv2.LMEDS)
        if matrix is None:
            raise Rejected("landmarks off the image")
        shrinks = matrix[0, 0] ** 2 + matrix[0, 1] ** 2 < 1  # area averaging when the crop is smaller than the face
        crop = cv2.warpAffine(rgb, matrix, (self.size, self.size), flags=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        in_crop = points @ matrix[:, :2].T + matrix[:, 2]
        return Face(self._equalize(crop), in_crop.astype(np.float32), self.pose(points, width, height), score,
                    len(faces))

    def descriptor(self, rgb: np.ndarray, box=None) -> np.ndarray:
        """dlib's 128-d face descriptor (an identity reader independent of fsx; same person below ~0.6 apart) of
        the face in ``box``, else of the largest face found; raises :class:`Rejected` when there is none."""
        if not hasattr(self, "_recogniser"):
            self._recogniser = self._dlib.face_recognition_model_v1(
                str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
        if box is None:
            faces = self.detect(rgb)
            if not faces:
                raise Rejected("no face")
            box = max(faces, key=lambda f: f[0][2] * f[0][3])[0]
        return np.array(self._recogniser.compute_face_descriptor(rgb, self._shape(rgb, box)), dtype=np.float32)

    def aligned_descriptors(self, images) -> np.ndarray:
        """(N, 128) descriptors of aligned faces (N, 3, S, S) floats in [0, 1], read from ``TEMPLATE_BOX``
        (enlarged to 150 px, the size dlib's descriptor model was trained at)."""
        out = []
        for image in images:
            rgb = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            side = round(150 / TEMPLATE_BOX[2])
            rgb = self.cv2.resize(rgb, (side, side), interpolation=self.cv2.INTER_CUBIC)
            out.append(self.descriptor(np.ascontiguousarray(rgb), tuple(v * side for v in TEMPLATE_BOX)))
        return np.stack(out) if out else np.zeros((0, 128), np.float32)
