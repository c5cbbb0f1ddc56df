"""vegeta adapter (REST only; runs in the cluster step image, not installable here).

Closed loop (the seed): `-rate=0 -max-workers=W -workers=W`. Open loop: `-rate=R/1s -workers=W` with
no worker cap, so requests start on schedule whatever the answers do.
Warm-up is a separate attack of `warmup_s` just before the measured one, on its own connections; its
results are DISCARDED (written to /dev/null), so the measured attack's first request opens a new
connection. The measured attack writes its gob results to `vegeta-results.bin`; `vegeta report
-type=json` (the raw artifact) and `vegeta encode -to=csv` (the samples) both read that file, so the
two always describe the same requests. No shell: each step is its own subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError
from orchbench.core.loadtools._process import BinaryTool, finish_run, run_steps, seconds
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.fsio import write_text


def targets_text(endpoint: Endpoint, payload: Path) -> str:
    """vegeta's http target format: the body is read from the payload file (`@path`)."""
    return f"POST {endpoint.url}\nContent-Type: application/json\n@{Path(payload).resolve()}\n"


def rate_flag(profile: LoadProfile) -> list[str]:
    if profile.workers < 1:
        raise ConfigError(f"workers must be >= 1, got {profile.workers}")
    if profile.mode == "closed":
        return ["-rate=0", f"-max-workers={profile.workers}", f"-workers={profile.workers}"]
    if profile.rate is None or profile.rate <= 0:
        raise ConfigError("open-loop profile needs a rate > 0")
    rate = (
        f"{int(profile.rate)}/1s"
        if float(profile.rate).is_integer()
        else f"{round(profile.rate * 1000)}/1000s"
    )
    return [f"-rate={rate}", f"-workers={profile.workers}"]


def attack_cmd(
    binary: str, targets: Path, profile: LoadProfile, duration_s: float, name: str, output: str
) -> list[str]:
    return [
        binary,
        "attack",
        *rate_flag(profile),
        f"-duration={seconds(duration_s)}",
        f"-targets={targets}",
        "-format=http",
        f"-timeout={seconds(profile.timeout_s)}",
        "-keepalive=true",
        f"-name={name}",
        f"-output={output}",
    ]


def report_cmd(binary: str, results: Path, output: Path) -> list[str]:
    return [binary, "report", "-type=json", f"-output={output}", str(results)]


def encode_cmd(binary: str, results: Path, output: Path) -> list[str]:
    return [binary, "encode", "-to=csv", f"-output={output}", str(results)]


@dataclass
class VegetaTool(BinaryTool):
    """raw_path: `vegeta report -type=json`; samples_path: `vegeta encode -to=csv` of the same results."""

    max_error_rate: float = 0.0
    binary: str | None = None
    name: str = "vegeta"

    VERSION_ARGS: ClassVar[list[str]] = ["-version"]
    INSTALL_HINT: ClassVar[str] = "it runs in the cluster load-test image"

    def commands(
        self, endpoint: Endpoint, payload: Path, profile: LoadProfile, out_dir: Path
    ) -> dict[str, list[str]]:
        """Every command `run` executes, in order (warmup only when warmup_s > 0)."""
        if endpoint.transport != "rest":
            raise ConfigError("vegeta drives REST only; use ghz or k6 for gRPC")
        b = self._binary()
        targets = out_dir / "vegeta-targets.txt"
        results = out_dir / "vegeta-results.bin"
        cmds = {}
        if profile.warmup_s > 0:
            cmds["warmup"] = attack_cmd(b, targets, profile, profile.warmup_s, "warmup", "/dev/null")
        cmds["attack"] = attack_cmd(b, targets, profile, profile.duration_s, "measure", str(results))
        cmds["report"] = report_cmd(b, results, out_dir / "vegeta-report.json")
        cmds["encode"] = encode_cmd(b, results, out_dir / "vegeta-samples.csv")
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
        if not Path(payload).is_file():
            raise ConfigError(f"payload not found: {payload}")
        write_text(out_dir / "vegeta-targets.txt", targets_text(endpoint, payload))
        cmds = self.commands(endpoint, payload, profile, out_dir)
        raw_path, samples_path = out_dir / "vegeta-report.json", out_dir / "vegeta-samples.csv"
        for stale in (raw_path, samples_path, out_dir / "vegeta-results.bin"):
            stale.unlink(missing_ok=True)
        version = self.version()
        stderr_path = out_dir / "vegeta.stderr.log"
        durations = {"warmup": profile.warmup_s, "attack": profile.duration_s}
        steps = run_steps(
            cmds,
            durations,
            profile.timeout_s,
            cpus,
            stderr_path,
            pinned=("warmup", "attack"),  # encode / report only read files
            exit_step="attack",
            stop_on_error=True,
        )
        extra = {
            "commands": cmds,
            "profile": profile.to_dict(),
            "warmup": "separate attack, results discarded" if "warmup" in cmds else "none",
            "stderr_path": str(stderr_path),
        }
        return finish_run(
            self.name,
            version,
            raw_path,
            samples_path,
            cmds["attack"],
            cpus,
            steps,
            extra,
            self.max_error_rate,
        )
