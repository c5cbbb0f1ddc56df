"""ghz adapter (gRPC only; runs in the cluster step image, not installable here).

The request is `-B payload.bin` (the binary PredictRequest) with a protoset built from the
tensorflow-protobuf descriptors (`--protoset`), so no .proto files are needed in the image.
`--duration-stop=wait` lets in-flight calls finish at the end of `-z`: ghz's default (`close`)
tears the connection down under the last call, which is the seed's one `Unavailable` per run.
Closed loop (the seed): `-c W --connections 1`; open loop: `--async -r R` (calls start on schedule
without waiting for answers). Warm-up is a separate run of `warmup_s` just before the measured one
(not `--skipFirst`, which counts requests, not seconds); its report is DISCARDED. The measured run's
`-O json` report is the raw artifact AND the samples (its `details` array).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from orchbench.core.arms import GRPC_METHOD, Endpoint
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools._process import BinaryTool, finish_run, run_steps, seconds
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.core.loadtools.protoset import PROTOSET_NAME, read_predict_request, write_protoset


def load_flags(profile: LoadProfile) -> list[str]:
    if profile.workers < 1:
        raise ConfigError(f"workers must be >= 1, got {profile.workers}")
    flags = ["-c", str(profile.workers), "--connections", "1"]
    if profile.mode == "open":
        if profile.rate is None or profile.rate < 1 or not float(profile.rate).is_integer():
            raise ConfigError(f"ghz needs a whole open-loop rate >= 1 request/s, got {profile.rate}")
        flags += ["--async", "-r", str(int(profile.rate))]
    return flags


def ghz_cmd(
    binary: str,
    endpoint: Endpoint,
    payload: Path,
    protoset: Path,
    profile: LoadProfile,
    duration_s: float,
    output: str,
    cpus: int | None = None,
) -> list[str]:
    return [
        binary,
        "--insecure",
        "--protoset",
        str(protoset),
        "--call",
        GRPC_METHOD,
        "-B",
        str(payload),
        *load_flags(profile),
        "-z",
        seconds(duration_s),
        "--keepalive=30m",
        "--duration-stop=wait",
        "-t",
        seconds(profile.timeout_s),
        *(["--cpus", str(cpus)] if cpus else []),
        "-O",
        "json",
        "-o",
        output,
        endpoint.grpc_target,
    ]


@dataclass
class GhzTool(BinaryTool):
    """raw_path == samples_path: ghz's `-O json` report, whose `details` are the per-request samples."""

    max_error_rate: float = 0.0
    binary: str | None = None
    name: str = "ghz"

    VERSION_ARGS: ClassVar[list[str]] = ["--version"]
    INSTALL_HINT: ClassVar[str] = "it runs in the cluster load-test image"

    def commands(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
    ) -> dict[str, list[str]]:
        if endpoint.transport != "grpc":
            raise ConfigError("ghz drives gRPC only; use vegeta or k6 for REST")
        b, protoset, payload = self._binary(), out_dir / PROTOSET_NAME, Path(payload).resolve()
        n_cpus = len(cpus) if cpus else None
        cmds = {}
        if profile.warmup_s > 0:
            cmds["warmup"] = ghz_cmd(
                b, endpoint, payload, protoset, profile, profile.warmup_s, "/dev/null", n_cpus
            )
        cmds["measure"] = ghz_cmd(
            b,
            endpoint,
            payload,
            protoset,
            profile,
            profile.duration_s,
            str(out_dir / "ghz-report.json"),
            n_cpus,
        )
        return cmds

    def run(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
    ) -> LoadRun:
        out_dir = out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        read_predict_request(payload)  # a ConfigError now beats a ghz error later
        write_protoset(out_dir / PROTOSET_NAME)
        cmds = self.commands(endpoint, payload, profile, out_dir, cpus)
        raw_path = out_dir / "ghz-report.json"
        raw_path.unlink(missing_ok=True)
        version = self.version()
        stderr_path = out_dir / "ghz.stderr.log"
        durations = {"warmup": profile.warmup_s, "measure": profile.duration_s}
        steps = run_steps(cmds, durations, profile.timeout_s, cpus, stderr_path)
        extra = {
            "commands": cmds,
            "profile": profile.to_dict(),
            "warmup": "separate run, report discarded" if "warmup" in cmds else "none",
            "stderr_path": str(stderr_path),
        }
        # ghz's JSON report is its samples file too
        return finish_run(
            self.name,
            version,
            raw_path,
            raw_path,
            cmds["measure"],
            cpus,
            steps,
            extra,
            self.max_error_rate,
        )
