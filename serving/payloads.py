"""Generate the shipped payloads from sklearn's flower photo (CC-BY-2.0), reproducibly.

    python -m serving.payloads --out payloads/

flower.jpg (640×427) → centre square crop → 224×224 bicubic → baseline JPEG, quality 87, 4:2:0,
no optimisation, no metadata. `flowers.json` is the seed's REST body and `flowers.bin` the seed's
binary PredictRequest (what tf_proto_save.py made); `flowers_v2.json` and `flowers_v2.bin` are the
same photo as an Open Inference Protocol request (REST infer body, serialised ModelInferRequest;
`serving.v2`). Byte-identical output needs the same JPEG
encoder: the committed files were made with the libjpeg-turbo version in `GENERATED_WITH`.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

from orchbench.fsio import write_bytes

MODEL_NAME = "flowers"
KEY = "1"
JPEG_QUALITY = 87
#: The encoder the committed payloads were made with (Pillow's bundled libjpeg-turbo).
GENERATED_WITH = {"libjpeg_turbo": "3.2.0"}


def jpeg_encoder_version() -> str | None:
    from PIL import features

    return features.version("libjpeg_turbo")


def flower_jpeg() -> bytes:
    from PIL import Image

    from serving.model import _open_sample, to_model_input

    img = Image.fromarray(to_model_input(_open_sample())[0], "RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


def rest_body(image: bytes, key: str = KEY) -> bytes:
    body = {"instances": [{"image_bytes": {"b64": base64.b64encode(image).decode()}, "key": key}]}
    return json.dumps(body, separators=(",", ":")).encode()


def grpc_body(image: bytes, key: str = KEY, model_name: str = MODEL_NAME) -> bytes:
    from serving.protos import make_predict_request

    return make_predict_request(model_name, image, key).SerializeToString(deterministic=True)


def generate() -> dict[str, bytes]:
    image = flower_jpeg()
    from serving import v2

    v2_grpc = v2.make_infer_request(MODEL_NAME, image, KEY).SerializeToString(deterministic=True)
    return {
        "flowers.json": rest_body(image),
        "flowers.bin": grpc_body(image),
        "flowers_v2.json": v2.make_rest_body(image, KEY),
        "flowers_v2.bin": v2_grpc,
    }


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in generate().items():
        write_bytes(out / name, data)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m serving.payloads", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="folder for flowers[_v2].json and flowers[_v2].bin"
    )
    args = ap.parse_args(argv)
    for path in write(args.out):
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
