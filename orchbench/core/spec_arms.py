"""The per-arm sections of an experiment spec (arms, their checks, platform endpoints' headers and
TLS, protocol http's request): pydantic models, strict, unknown keys refused. `orchbench.core.spec`
puts them together with `orchbench.core.spec_sections`'."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from orchbench.core.arms import ARM_NAME_PATTERN, DEFAULT_BASELINE, HOPS
from orchbench.core.spec_sections import _Strict


class EnvRef(_Strict):
    """A header value read from this environment variable where the request is made; only the
    variable's NAME is ever written (spec dumps, the compiled workflow, records, results)."""

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
Headers = dict[str, str | EnvRef]


def _check_headers(headers: Headers) -> Headers:
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if isinstance(value, str) and any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: value has a line break or NUL")
    return headers


class HttpRequest(_Strict):
    """protocol http: the request every arm gets, and what counts as a success (REST only)."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field("/", pattern=r"^/[!-~]*$", max_length=2000, description="request path and query")
    headers: Headers = {}  # noqa: RUF012 (a pydantic model: ruff cannot see _Strict's base in spec_sections)
    body: str | None = Field(None, description="request body file (relative to the spec's folder)")
    success_status: int = Field(200, ge=100, le=599)
    json_field: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$",
        description="a dotted JSON path (`outputs.0.data`) that must be present in the answer",
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: Headers) -> Headers:
        return _check_headers(value)


class Tls(_Strict):
    """platform endpoints: TLS to an arm (https URLs; TLS gRPC)."""

    ca_file: str | None = Field(None, description="CA bundle (PEM) the arm's certificate must chain to")
    verify: bool = Field(True, description="false: no certificate checks (self-signed test set-ups)")


Hop = Literal["model", "orchestrator", "nginx", "haproxy"]
assert tuple(Hop.__args__) == HOPS  # type: ignore[attr-defined]


class Verify(_Strict):
    """What an arm's answers must show: a response header (REST) or initial-metadata key (gRPC)
    present (optionally with this value) or absent."""

    header: str = Field(pattern=r"^[a-z0-9][-a-z0-9_.]{0,62}$", description="lower-case header name")
    present: bool = True
    value: str | None = Field(None, max_length=200, description="with present: the value it must have")

    @model_validator(mode="after")
    def _value_needs_present(self) -> Verify:
        if self.value is not None and not self.present:
            raise ValueError("verify.value applies with present: true only")
        return self


class Arm(_Strict):
    """One arm of the experiment. Locally, `hop` says what answers: the model server direct
    (`model`), or the reference orchestrator / nginx / HAProxy in front of the baseline's model."""

    name: str = Field(pattern=ARM_NAME_PATTERN, description="used in task names, file paths and k6 tags")
    baseline: bool = False
    hop: Hop | None = Field(
        None, description="local platform: unset is model for the baseline, else orchestrator"
    )
    port: int | None = Field(None, ge=1024, le=65535, description="local: where the arm listens")
    verify: list[Verify] = Field([], description="checked on the arm's answers, besides the hop's own marker")
    threshold_ms: float | None = Field(
        None, ge=0, description="this arm's regression threshold (both transports)"
    )
    aa: bool = Field(
        False,
        description="A/A control: a second deployment identical to the baseline's (locally its own "
        "model server process on its own port, pinned like the baseline's); its overhead is the noise "
        "between two copies of one thing, and the other arms are flagged when they do not stand clear "
        "of it (orchbench.core.aa)",
    )
    inject_delay_ms: float | None = Field(
        None,
        ge=0,
        le=1000,
        description="local, an orchestrator arm: the delay its orchestrator adds (unset: "
        "local.inject_delay_ms); `orchbench calibrate` gives each injected delay an arm of its own",
    )
    # platform endpoints: where the arm answers (nothing is deployed)
    url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=500,
        description="endpoints: REST base URL, http(s)://host:port[/prefix]",
    )
    grpc: str | None = Field(None, pattern=r"^[^\s/:]+:[0-9]{1,5}$", description="endpoints: gRPC host:port")
    headers: Headers = Field({}, description="endpoints: extra request headers ({env: NAME} values)")
    tls: Tls | None = None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: Headers) -> Headers:
        return _check_headers(value)

    @model_validator(mode="after")
    def _aa_is_a_copy(self) -> Arm:
        if self.aa and (self.baseline or self.hop not in (None, "model")):
            raise ValueError(f"arm {self.name}: aa: true is a copy of the baseline's model (hop: model)")
        if self.inject_delay_ms is not None and self.local_hop() != "orchestrator":
            raise ValueError(f"arm {self.name}: inject_delay_ms is for an arm of hop orchestrator")
        return self

    @model_serializer(mode="wrap")
    def _omit_no_aa(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`aa: false` is left out, so specs (and compiled workflows) of before read as they did."""
        data = dict(handler(self))
        if not data.get("aa"):
            data.pop("aa", None)
        for key in ("url", "grpc", "tls", "headers"):  # platform endpoints' keys, likewise
            if not data.get(key):
                data.pop(key, None)
        if data.get("inject_delay_ms") is None:  # unset (an explicit 0 stays: it overrides local's)
            data.pop("inject_delay_ms", None)
        return data

    def local_hop(self) -> str:
        return self.hop or ("model" if self.baseline or self.aa else "orchestrator")


#: The seed's two arms: what a spec without `arms:` means.
DEFAULT_ARMS = (Arm(name=DEFAULT_BASELINE, baseline=True, hop="model"), Arm(name="with", hop="orchestrator"))
