"""What the orchestrator's REST forwarders share: the body limit, the path rewrite's type, the JSON
error body and the reason phrase of a status."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

MAX_BODY = 64 * 1024 * 1024

PathRewrite = Callable[[str], "str | None"]


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Error"
