"""The converted EfficientNet-Lite0: torch-free weight loading, ONNX vs numpy, sensible predictions."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from serving import convert
from serving.errors import ServingConfigError
from serving.model import BadImageError, Classifier, build_model, class_names, decode_image, sample_image_path
from serving.weights import load_state_dict


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return load_state_dict(convert.weights_path())


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()


def _image(name: str) -> np.ndarray:
    return decode_image(sample_image_path(name).read_bytes())


def test_state_dict_is_efficientnet_lite0(state: dict[str, np.ndarray]) -> None:
    blocks = convert.check_architecture(state)
    assert len(blocks) == 16
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert 4.6e6 < params < 4.7e6  # EfficientNet-Lite0: ~4.65 M parameters
    assert state["_conv_stem.weight"].flags.c_contiguous  # stored with TF-layout strides, made contiguous


def test_refuses_unknown_pickled_globals(tmp_path) -> None:
    import pickle

    bad = tmp_path / "evil.pth"
    bad.write_bytes(
        pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({}) + pickle.dumps(print)
    )
    with pytest.raises(ServingConfigError, match=r"refusing to load global builtins\.print"):
        load_state_dict(bad)


@pytest.mark.parametrize("tensor", ["stem_out", "block0_out", "block1_out"])
def test_onnx_first_layers_match_numpy_reference(state: dict[str, np.ndarray], tensor: str) -> None:
    model = convert.build_onnx(state, extra_outputs=[tensor])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = _image("china.jpg")
    _, got = sess.run(None, {"image": image})
    want = convert.reference_forward(state, image, upto=tensor)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_onnx_full_network_matches_numpy_reference(
    state: dict[str, np.ndarray], classifier: Classifier
) -> None:
    image = _image("flower.jpg")
    np.testing.assert_allclose(
        classifier.probabilities(image), convert.reference_forward(state, image), atol=1e-5
    )


def test_tf_same_padding_is_asymmetric_for_stride_2() -> None:
    assert convert.same_pads(224, 3, 2) == (0, 1, 112)
    assert convert.same_pads(56, 5, 2) == (1, 2, 28)
    assert convert.same_pads(14, 5, 1) == (2, 2, 14)


def test_flower_photo_is_a_flower(classifier: Classifier) -> None:
    pred = classifier.predict_image(_image("flower.jpg"))
    names = [class_names()[c] for c in pred.classes]
    # What the model really says about sklearn's flower.jpg (a daisy-like flower with a bee):
    # daisy is top-1, with mushrooms and a bee among the top 5.
    assert names[0] == "daisy", names
    assert "bee" in names
    assert pred.scores == sorted(pred.scores, reverse=True)
    assert 0 < sum(pred.scores) <= 1.0 + 1e-6


def test_china_photo_is_a_building(classifier: Classifier) -> None:
    pred = classifier.predict_image(_image("china.jpg"))
    names = [class_names()[c] for c in pred.classes]
    assert names[0] == "palace", names
    assert {"bell tower", "monastery"} & set(names)


def test_model_is_cached_and_verified(classifier: Classifier) -> None:
    path = build_model()
    assert path == classifier.model_path
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["converter_version"] == convert.CONVERTER_VERSION
    assert meta["check"]["max_abs_diff_vs_numpy"] < 1e-4
    assert meta["weights_sha256"][:16] in path.name


def test_bad_image_bytes_are_refused() -> None:
    with pytest.raises(BadImageError):
        decode_image(b"definitely not a jpeg")
    with pytest.raises(BadImageError):
        decode_image(sample_image_path("flower.jpg").read_bytes()[:200])  # truncated JPEG
