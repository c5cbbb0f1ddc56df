// Shared by rest.js and grpc.js. The Python adapter (orchbench/loadtools/k6.py) writes the config
// JSON named by ORCHBENCH_CONFIG: the k6 `options` (scenarios `warmup` then `measure`, thresholds on
// the `{scenario:measure}` submetrics), the target, the payload paths and where the summary goes.
import { sleep } from 'k6';
import exec from 'k6/execution';

export const cfg = JSON.parse(open(__ENV.ORCHBENCH_CONFIG));

// Last request latency of this VU, in ms: the warm-up stops starting requests when fewer than
// 3 of them (+5 ms) fit before its end, so no warm-up request is in flight when `measure` starts
// on the same VU (gracefulStop 0s lets k6 hand the VU, and its connection, to `measure`).
let lastMs = 0;

export function warmupIteration(request) {
  const left = exec.scenario.startTime + cfg.warmup_ms - Date.now();
  if (left < 3 * lastMs + 5) {
    sleep(Math.max(left, 0) / 1000 + 0.05); // interrupted at the end of the warm-up
    return;
  }
  const t0 = Date.now();
  request();
  lastMs = Date.now() - t0;
}

export function summaryFiles(data) {
  return { [cfg.summary_path]: JSON.stringify(data) };
}
