// Shared by rest.js and grpc.js. The Python adapter (orchbench/core/loadtools/k6.py) writes the config
// JSON named by ORCHBENCH_CONFIG: the k6 `options` (scenarios `warmup` then `measure`, thresholds on
// the `{scenario:measure}` submetrics), the target(s), the payload paths and where the summary goes.
import { sleep } from 'k6';
import exec from 'k6/execution';

export const cfg = JSON.parse(open(__ENV.ORCHBENCH_CONFIG));

// Last request latency of this VU, in ms: the warm-up stops starting requests when fewer than
// 3 of them (+25 ms) fit before its end, so no warm-up request is in flight when `measure` starts
// on the same VU (gracefulStop 0s lets k6 hand the VU, and its connection, to `measure`).
let lastMs = 0;

export function warmupIteration(request) {
  const left = exec.scenario.startTime + cfg.warmup_ms - Date.now();
  // +25 ms: with +5 ms, once setup() was exported, a warm-up request was cut off at the hand-over in
  // 3 of 4 runs of tests/test_loadtools_k6.py's pair test (the scenario's end and
  // exec.scenario.startTime seem to differ by a few ms then, not checked in k6's source); 12 of 12 clean
  // with +25 ms
  if (left < 3 * lastMs + 25) {
    sleep(Math.max(left, 0) / 1000 + 0.05); // interrupted at the end of the warm-up
    return;
  }
  const t0 = Date.now();
  request();
  lastMs = Date.now() - t0;
}

// Request-level interleaving (cfg.targets, both arms in one process): each VU alternates between
// the targets iteration by iteration, VU n starting with target (n - 1) mod count, so both arms
// see the same moments of the machine. The iteration's arm is set as a VU tag: every metric the
// iteration emits (request, check, iteration, data) carries `arm`, and the adapter splits on it.
// In an open-loop stage (cfg.target_by_scenario) each arm has its own constant-arrival-rate scenario,
// whose env names the arm (ORCHBENCH_ARM) and whose tags carry `arm`: the VU serves that arm only.
export const targets = cfg.targets || null;
const byScenario = !!cfg.target_by_scenario;
// cfg.rotation (optional): the sequence of target indices a VU walks through instead of 0, 1, ..., N-1;
// with injected delays a cycle in which every arm follows every ordered pair of arms, itself included,
// once (orchbench/core/loadtools/rotation.py), so every arm's requests follow the same mix of arms.
const rotation = cfg.rotation || (targets ? targets.map((_, i) => i) : null);
let turn = -1;

export function nextTarget() {
  if (!targets) return 0;
  if (byScenario) {
    const arm = __ENV.ORCHBENCH_ARM;
    const i = targets.findIndex((t) => t.arm === arm);
    if (i < 0) throw new Error(`scenario ${exec.scenario.name}: no target for arm ${arm}`);
    return i;
  }
  if (turn < 0) turn = exec.vu.idInTest - 1;
  const i = rotation[turn % rotation.length];
  turn += 1;
  exec.vu.metrics.tags.arm = targets[i].arm;
  return i;
}

// An arm's extra request headers (gRPC: metadata): the literal ones, and those whose value comes
// from an environment variable, read here (the config names the variable, never the value).
export function targetHeaders(t) {
  const out = Object.assign({}, (t && t.headers) || {});
  const fromEnv = (t && t.env_headers) || {};
  for (const name of Object.keys(fromEnv)) {
    const value = __ENV[fromEnv[name]];
    if (value === undefined) throw new Error(`header ${name}: environment variable ${fromEnv[name]} is not set`);
    out[name] = value;
  }
  return out;
}

export function summaryFiles(data) {
  return { [cfg.summary_path]: JSON.stringify(data) };
}

// setup() runs once every VU is initialised, right before the scenarios start: the adapter waits for
// this line in k6's log to time the measured window it samples CPU over (loadtools/k6_stages.py).
export function setup() {
  console.log('orchbench-scenarios-start');
}
