"""Face extractors: an offline MediaPipe face-mesh backend and an optional py-feat backend.

One small class per backend (FaceRecipe: feature names, rate, parameters,
version, extract) in FACE_BACKENDS, keyed by the FaceBackend enum;
`FaceExtractor` is what callers build (it validates and samples the frames).

Frames are sampled on a fixed `fps` grid. With several faces in view the
extractor follows the main face: detections are linked into tracks by box
overlap and the track with the largest summed area (big and persistent) wins.
Frames where the main face is absent stay in the sequence with zero features
and `face_present = 0` (and `Features.present` False): never dropped.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .choices import FaceBackend
from .errors import BackendUnavailableError, ExtractionError
from .features import Features
from .media import sample_frames


def parse_face_backend(value: FaceBackend | str) -> FaceBackend:
    """The face extractor named by `value` (a FaceBackend or its string); a one-line ExtractionError otherwise."""
    try:
        return FaceBackend(value)
    except ValueError:
        choices = ", ".join(b.value for b in FaceBackend)
        raise ExtractionError(f"unknown face extractor {value!r}; choose one of: {choices}") from None


# ---------------------------------------------------------------------------
# MediaPipe face-mesh geometry. Indices are the canonical 478-point mesh
# (468 + 10 iris points with refine_landmarks). "right" is the subject's right.
_LANDMARK_SUBSET = {
    "brow_r": (70, 63, 105, 66, 107),
    "brow_l": (336, 296, 334, 293, 300),
    "eye_r": (33, 160, 158, 133, 153, 144),
    "eye_l": (362, 385, 387, 263, 373, 380),
    "nose": (168, 6, 197, 1, 98, 327),
    "mouth": (61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91, 13, 14),
    "jaw": (234, 132, 172, 148, 152, 377, 397, 361, 454),
    "iris": (468, 473),
}
_SUBSET = [i for group in _LANDMARK_SUBSET.values() for i in group]  # 53 points
_EYE_R_OUT, _EYE_R_IN, _EYE_L_IN, _EYE_L_OUT = 33, 133, 362, 263
_FOREHEAD, _CHIN, _NOSE_TIP = 10, 152, 1
_MOUTH_R, _MOUTH_L, _LIP_UP, _LIP_LO, _LIP_UP_OUT, _LIP_LO_OUT = 61, 291, 13, 14, 0, 17
_CHEEK_R, _CHEEK_L = 234, 454
_IRIS_R, _IRIS_L = 468, 473

POSE_NAMES = ["pose_yaw", "pose_pitch", "pose_roll", "face_x", "face_y", "face_scale"]
EXPRESSION_NAMES = [
    "eye_open_r", "eye_open_l", "mouth_open", "mouth_width", "smile", "lip_gap",
    "brow_raise_r", "brow_raise_l", "brow_furrow", "jaw_drop",
    "gaze_h_r", "gaze_h_l", "gaze_v_r", "gaze_v_l",
]  # fmt: skip
STATUS_NAMES = ["face_present", "n_faces"]


def mediapipe_feature_names() -> list[str]:
    """The 6 + 14 + 2 + 159 = 181 columns of the MediaPipe backend."""
    geometry = [f"lm{idx}_{axis}" for idx in _SUBSET for axis in "xyz"]
    return POSE_NAMES + EXPRESSION_NAMES + STATUS_NAMES + geometry


def _rotation_to_euler(r: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees of a face rotation r = Rz(roll) @ Ry(yaw) @ Rx(pitch)."""
    yaw = math.degrees(math.asin(float(np.clip(-r[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


def face_descriptors(points: np.ndarray, width: int, height: int, n_faces: int) -> np.ndarray:
    """Per-frame features (181,) from one face's landmarks (478, 3) in MediaPipe's normalised coordinates.

    Head pose comes from a face frame built on the eye line and the chin→forehead
    axis; geometry is the landmark subset expressed in that frame, centred on the
    eyes and divided by the inter-ocular distance, so it describes expression and
    not where the face is in the picture or how big it is.
    """
    # Pixel units with y up and z towards the camera: a right-handed frame where a
    # frontal, upright face has the identity rotation.
    p = np.stack([points[:, 0] * width, -points[:, 1] * height, -points[:, 2] * width], axis=1)  # (478, 3)
    x_axis = p[_EYE_L_OUT] - p[_EYE_R_OUT]
    iod = float(np.linalg.norm(x_axis)) or 1.0
    x_axis = x_axis / iod
    up = p[_FOREHEAD] - p[_CHIN]
    y_axis = up - x_axis * float(up @ x_axis)
    y_axis /= float(np.linalg.norm(y_axis)) or 1.0
    z_axis = np.cross(x_axis, y_axis)
    rot = np.stack([x_axis, y_axis, z_axis], axis=1)  # (3, 3), columns = face axes in camera frame
    yaw, pitch, roll = _rotation_to_euler(rot)
    centre = (p[_EYE_L_OUT] + p[_EYE_R_OUT] + p[_EYE_L_IN] + p[_EYE_R_IN]) / 4
    local = (p - centre) @ rot / iod  # (478, 3) in the face frame, inter-ocular units

    def dist(a: int, b: int) -> float:
        return float(np.linalg.norm(local[a] - local[b]))

    eye_w_r, eye_w_l = dist(_EYE_R_OUT, _EYE_R_IN) or 1.0, dist(_EYE_L_OUT, _EYE_L_IN) or 1.0
    eye_open_r = (dist(160, 144) + dist(158, 153)) / (2 * eye_w_r)
    eye_open_l = (dist(385, 380) + dist(387, 373)) / (2 * eye_w_l)
    mouth_w = dist(_MOUTH_R, _MOUTH_L) or 1.0
    mouth_open = dist(_LIP_UP, _LIP_LO) / mouth_w
    lip_centre_y = (local[_LIP_UP_OUT, 1] + local[_LIP_LO_OUT, 1]) / 2
    smile = float((local[_MOUTH_R, 1] + local[_MOUTH_L, 1]) / 2 - lip_centre_y)  # corners above lip centre
    lip_gap = dist(_LIP_UP_OUT, _LIP_LO_OUT)
    brow_r = float(np.mean(local[list(_LANDMARK_SUBSET["brow_r"]), 1]) - np.mean(local[[159, 145], 1]))
    brow_l = float(np.mean(local[list(_LANDMARK_SUBSET["brow_l"]), 1]) - np.mean(local[[386, 374], 1]))
    brow_furrow = dist(107, 336)
    jaw_drop = dist(_NOSE_TIP, _CHIN)

    def gaze(iris: int, outer: int, inner: int, upper: int, lower: int) -> tuple[float, float]:
        mid = (local[outer] + local[inner]) / 2
        w = abs(local[inner, 0] - local[outer, 0]) or 1.0
        h = abs(local[upper, 1] - local[lower, 1]) or 1.0
        return float((local[iris, 0] - mid[0]) / w), float(
            (local[iris, 1] - (local[upper, 1] + local[lower, 1]) / 2) / h
        )

    gh_r, gv_r = gaze(_IRIS_R, _EYE_R_OUT, _EYE_R_IN, 159, 145)
    gh_l, gv_l = gaze(_IRIS_L, _EYE_L_OUT, _EYE_L_IN, 386, 374)
    face_x = float(np.mean(points[:, 0]))
    face_y = float(np.mean(points[:, 1]))
    pose = [yaw, pitch, roll, face_x, face_y, iod / max(width, height)]
    expression = [
        eye_open_r,
        eye_open_l,
        mouth_open,
        mouth_w,
        smile,
        lip_gap,
        brow_r,
        brow_l,
        brow_furrow,
        jaw_drop,
        gh_r,
        gh_l,
        gv_r,
        gv_l,
    ]
    status = [1.0, float(n_faces)]
    return np.concatenate([pose, expression, status, local[_SUBSET].reshape(-1)]).astype(np.float32)  # (181,)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def select_main_face(boxes: list[list[np.ndarray]], min_iou: float = 0.3) -> list[int | None]:
    """Index of the main face's detection in each frame (None where it is absent).

    boxes[t] lists the boxes (x0, y0, x1, y1) detected in frame t. Detections are
    linked greedily into tracks (a detection joins the track whose last box
    overlaps it most, IoU >= min_iou); a track's score is its summed box area,
    so a face that is both large and present in many frames wins over a
    larger face seen briefly or a persistent small one.
    """
    tracks: list[dict] = []  # {"last": box, "frames": {t: i}, "score": float}
    for t, frame_boxes in enumerate(boxes):
        taken: set[int] = set()
        order = sorted(range(len(frame_boxes)), key=lambda i: -_box_area(frame_boxes[i]))
        for i in order:
            box = frame_boxes[i]
            best, best_iou = None, min_iou
            for k, track in enumerate(tracks):
                if k in taken:
                    continue
                overlap = _iou(track["last"], box)
                if overlap >= best_iou:
                    best, best_iou = k, overlap
            if best is None:
                tracks.append({"last": box, "frames": {t: i}, "score": _box_area(box)})
                taken.add(len(tracks) - 1)
            else:
                track = tracks[best]
                track["last"], track["score"] = box, track["score"] + _box_area(box)
                track["frames"][t] = i
                taken.add(best)
    if not tracks:
        return [None] * len(boxes)
    main = max(tracks, key=lambda tr: tr["score"])
    return [main["frames"].get(t) for t in range(len(boxes))]


def _box_area(box: np.ndarray) -> float:
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the block: MediaPipe's C++ (absl) start-up
    warnings bypass Python and ignore GLOG_minloglevel. Python exceptions still propagate."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class FaceRecipe(ABC):
    """One face backend with fixed parameters: its feature names, rate, parameters and version, and `extract`.

    `extract` gets the frames sampled on the fps grid, (T, H, W, 3) uint8 RGB
    with their times (T,), T > 0; sampling is shared (FaceExtractor).
    """

    name: ClassVar[FaceBackend]
    # Bumped whenever the output changes for the same input, so a recipe recorded
    # at training time can refuse features from a different one.
    version: ClassVar[int] = 1
    reads_frames: ClassVar[bool] = True  # False: no video is decoded for it

    def __init__(self, fps: float, max_faces: int, max_side: int, min_detection_confidence: float) -> None:
        self.fps = fps
        self.max_faces = max_faces
        self.max_side = max_side
        self.min_detection_confidence = min_detection_confidence

    def params(self) -> dict:
        """The JSON-able parameters that, with the name and version, define the output exactly."""
        return {
            "fps": self.fps,
            "max_faces": self.max_faces,
            "max_side": self.max_side,
            "min_detection_confidence": self.min_detection_confidence,
            # Every frame is detected afresh, so a frame's features do not depend on
            # the frames before it: a segment of a clip gives the same rows as the clip.
            "static_image_mode": True,
        }

    @property
    def rate_hz(self) -> float:
        """Feature rows per second: the sampling grid's."""
        return self.fps

    @abstractmethod
    def feature_names(self) -> list[str]:
        """Column names, known without running on a clip (needed for clips with no video track)."""

    @abstractmethod
    def extract(self, frames: np.ndarray, times: np.ndarray) -> Features:
        """Per-frame features of the main face; frames without it stay, zero and not present."""


class MediaPipeMesh(FaceRecipe):
    """MediaPipe 0.10.21's bundled 478-point face mesh (offline): pose, expression and landmark descriptors."""

    name = FaceBackend.mediapipe

    def __init__(self, fps: float, max_faces: int, max_side: int, min_detection_confidence: float) -> None:
        super().__init__(fps, max_faces, max_side, min_detection_confidence)
        self._mesh: Any = None
        self._mesh_warm = False

    def feature_names(self) -> list[str]:
        return mediapipe_feature_names()

    def _get_mesh(self):
        if self._mesh is None:
            os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logs go to stderr otherwise
            try:
                import mediapipe as mp

                face_mesh = mp.solutions.face_mesh
            except (ImportError, AttributeError) as exc:
                raise BackendUnavailableError(
                    f"the mediapipe face backend needs mediapipe==0.10.21 (bundled face mesh): {exc}; "
                    "install it with `pip install -c requirements/constraints.txt mediapipe==0.10.21`"
                ) from None
            with native_stderr_silenced():
                self._mesh = face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=self.max_faces,
                    refine_landmarks=True,
                    min_detection_confidence=self.min_detection_confidence,
                )
            self._mesh_warm = False
        return self._mesh

    def extract(self, frames: np.ndarray, times: np.ndarray) -> Features:
        mesh = self._get_mesh()
        height, width = frames.shape[1:3]
        per_frame: list[list[np.ndarray]] = []  # landmarks (478, 3) per detected face
        boxes: list[list[np.ndarray]] = []
        for frame in frames:
            if not self._mesh_warm:
                # The first frame with a face prints the graph's one-time C++ warnings.
                with native_stderr_silenced():
                    result = mesh.process(frame)
                self._mesh_warm = bool(result.multi_face_landmarks)
            else:
                result = mesh.process(frame)
            faces = []
            for lms in result.multi_face_landmarks or []:
                faces.append(np.array([(lm.x, lm.y, lm.z) for lm in lms.landmark], np.float32))  # (478, 3)
            per_frame.append(faces)
            boxes.append(
                [
                    np.array(
                        [f[:, 0].min() * width, f[:, 1].min() * height, f[:, 0].max() * width, f[:, 1].max() * height]
                    )
                    for f in faces
                ]
            )
        main = select_main_face(boxes)
        names = mediapipe_feature_names()
        values = np.zeros((len(frames), len(names)), np.float32)  # (T, 181); absent faces stay 0
        present = np.zeros(len(frames), bool)
        for t, idx in enumerate(main):
            if idx is None:
                values[t, names.index("n_faces")] = len(per_frame[t])
                continue
            values[t] = face_descriptors(per_frame[t][idx], width, height, len(per_frame[t]))
            present[t] = True
        info = {"frames": int(len(frames)), "frames_with_face": int(present.sum())}
        return Features(values, times, names, self.fps, present=present, info=info)


class PyFeat(FaceRecipe):
    """py-feat's Detector: action units, emotions, head pose and 68 landmarks of the largest face (needs its hub models)."""

    name = FaceBackend.pyfeat

    def __init__(self, fps: float, max_faces: int, max_side: int, min_detection_confidence: float) -> None:
        super().__init__(fps, max_faces, max_side, min_detection_confidence)
        self._pyfeat: Any = None

    def feature_names(self) -> list[str]:
        return list(PYFEAT_COLUMNS)

    def extract(self, frames: np.ndarray, times: np.ndarray) -> Features:
        detector = self._get_pyfeat()
        import tempfile

        from PIL import Image

        names = list(PYFEAT_COLUMNS)
        values = np.zeros((len(frames), len(names)), np.float32)
        present = np.zeros(len(frames), bool)
        with tempfile.TemporaryDirectory(prefix="deepmlf-pyfeat-") as tmp:
            paths = []
            for t, frame in enumerate(frames):
                paths.append(os.path.join(tmp, f"{t:06d}.png"))
                Image.fromarray(frame).save(paths[-1])
            result = detector.detect_image(paths)
        frame_col = "frame" if "frame" in result.columns else None
        for t in range(len(frames)):
            rows = result[result[frame_col] == t] if frame_col else result.iloc[t : t + 1]
            rows = rows.dropna(subset=[c for c in ("FaceScore",) if c in rows.columns])
            if rows.empty:
                continue
            if {"FaceRectWidth", "FaceRectHeight"} <= set(rows.columns):
                rows = rows.assign(_area=rows["FaceRectWidth"] * rows["FaceRectHeight"]).sort_values(
                    "_area", ascending=False
                )
            row = rows.iloc[0]
            values[t] = [float(row[c]) if c in row.index else 0.0 for c in names]
            present[t] = True
        return Features(values, times, names, self.fps, present=present)

    def _get_pyfeat(self):
        if self._pyfeat is None:
            try:
                import feat
            except Exception as exc:  # ImportError, or torchvision's operator error on CPU-torch installs
                raise BackendUnavailableError(
                    f"the py-feat face backend is not usable here ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                    "use --face mediapipe (offline), or install py-feat with a matching CPU torchvision"
                ) from None
            detector_cls = getattr(feat, "Detector", None) or getattr(feat, "Detectorv1", None)
            if detector_cls is None:
                raise BackendUnavailableError("this py-feat has no Detector class; use --face mediapipe")
            try:
                self._pyfeat = detector_cls()
            except Exception as exc:  # its weights come from the hub
                raise BackendUnavailableError(
                    f"py-feat could not load its models ({type(exc).__name__}); they download from the "
                    "Hugging Face hub (py-feat/*): fetch them once with network access, or use --face mediapipe"
                ) from None
        return self._pyfeat


class NoFace(FaceRecipe):
    """No vision features (the model does not read video)."""

    name = FaceBackend.none
    reads_frames = False

    def params(self) -> dict:
        return {}

    @property
    def rate_hz(self) -> float:
        return 0.0

    def feature_names(self) -> list[str]:
        return []

    def extract(self, frames: np.ndarray, times: np.ndarray) -> Features:
        return Features.empty([], 0.0, "face extractor is 'none'")


# The face backends, keyed by the enum: adding one is its class and its entry here.
FACE_BACKENDS: dict[FaceBackend, type[FaceRecipe]] = {c.name: c for c in (MediaPipeMesh, PyFeat, NoFace)}
FACE_VERSIONS = {name: cls.version for name, cls in FACE_BACKENDS.items()}


class FaceExtractor:
    """One face recipe with fixed parameters: the backend from FACE_BACKENDS, plus the shared frame sampling.

    backend:   a FaceBackend (or its string value)
    fps:       frames sampled per second of video (the vision sequence rate)
    max_faces: faces the detector may return per frame (the main one is kept)
    max_side:  frames are downscaled so their longer side is at most this many pixels
    min_detection_confidence: MediaPipe's detector threshold
    """

    def __init__(
        self,
        backend: FaceBackend | str = FaceBackend.mediapipe,
        fps: float = 5.0,
        max_faces: int = 4,
        max_side: int = 640,
        min_detection_confidence: float = 0.5,
    ) -> None:
        self.backend = parse_face_backend(backend)
        if not (0 < fps <= 60):
            raise ExtractionError(f"--fps must be in (0, 60], got {fps}")
        if max_faces < 1 or max_side < 64:
            raise ExtractionError("max_faces must be >= 1 and max_side >= 64")
        if not (0 < min_detection_confidence < 1):
            raise ExtractionError("min_detection_confidence must be in (0, 1)")
        self.fps = float(fps)
        self.max_faces = int(max_faces)
        self.max_side = int(max_side)
        self.min_detection_confidence = float(min_detection_confidence)
        self.impl = FACE_BACKENDS[self.backend](self.fps, self.max_faces, self.max_side, self.min_detection_confidence)

    def params(self) -> dict:
        """The JSON-able parameters that, with the name and version, define the output exactly."""
        return self.impl.params()

    def spec(self) -> dict:
        """FeatureRecipe entry: extractor name, version, parameters."""
        return {"extractor": self.backend.value, "version": self.impl.version, "params": self.params()}

    @property
    def rate_hz(self) -> float:
        return self.impl.rate_hz

    def feature_names(self) -> list[str]:
        """Column names, known without running on a clip (needed for clips with no video track)."""
        return self.impl.feature_names()

    def extract(self, path: Path, start: float | None = None, end: float | None = None) -> Features:
        """Per-frame face features of a clip (or a [start, end) window); T == 0 without a video track."""
        if not self.impl.reads_frames:
            return self.impl.extract(np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0))
        frames, times = sample_frames(Path(path), self.fps, start, end, self.max_side)  # (T, H, W, 3), (T,)
        if len(frames) == 0:
            return Features.empty(self.feature_names(), self.rate_hz, "no video track")
        return self.impl.extract(frames, times)


# py-feat's per-face columns we keep: 20 action units, 7 emotions, head pose, 68 landmarks.
PYFEAT_COLUMNS = (
    [f"AU{n:02d}" for n in (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 17, 20, 23, 24, 25, 26, 28, 43)]
    + ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    + ["Pitch", "Roll", "Yaw"]
    + [f"{axis}_{i}" for i in range(68) for axis in "xy"]
)
