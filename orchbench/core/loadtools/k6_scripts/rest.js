// REST: POST the payload file's exact bytes as application/json; check 200 + predictions[0].scores.
// One target (cfg.url), or the two arms alternating request by request (cfg.targets, see common.js).
import http from 'k6/http';
import { check } from 'k6';
import { cfg, nextTarget, summaryFiles, targets, warmupIteration } from './common.js';

const body = open(cfg.payload, 'b');
const params = { headers: { 'Content-Type': 'application/json' }, timeout: cfg.timeout };
const urls = targets ? targets.map((t) => t.url) : [cfg.url];

export const options = cfg.options;

function hasScores(r) {
  try {
    const scores = r.json('predictions.0.scores');
    return Array.isArray(scores) && scores.length > 0;
  } catch (e) {
    return false;
  }
}

function request() {
  const res = http.post(urls[nextTarget()], body, params);
  check(res, { [cfg.check_name]: (r) => r.status === 200 && hasScores(r) });
}

export function warmup() {
  warmupIteration(request);
}

export function measure() {
  request();
}

export function handleSummary(data) {
  return summaryFiles(data);
}
