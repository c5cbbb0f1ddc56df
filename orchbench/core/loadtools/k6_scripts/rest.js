// REST: send the payload file's exact bytes as application/json and check the answer by protocol:
// tfserving 200 + predictions[0].scores; v2 an Open Inference Protocol answer (v2_checks.js); http the
// spec's success status and, if named, a JSON field present in the answer.
// One target (cfg.url), or the arms rotating request by request (cfg.targets, see common.js).
import http from 'k6/http';
import { check } from 'k6';
import { cfg, nextTarget, summaryFiles, targetHeaders, targets, warmupIteration } from './common.js';

export { setup } from './common.js';
import { v2RestOk } from './v2_checks.js';

const body = open(cfg.payload, 'b');
const protocol = cfg.protocol || 'tfserving';
const method = cfg.http_method || 'POST';
const sendBody = cfg.send_body === undefined ? true : cfg.send_body;
const all = targets || [cfg];
const urls = all.map((t) => t.url);
const params = all.map((t) => ({
  headers: Object.assign({ 'Content-Type': 'application/json' }, targetHeaders(t)),
  timeout: cfg.timeout,
}));

export const options = cfg.options;

function hasScores(r) {
  try {
    const scores = r.json('predictions.0.scores');
    return Array.isArray(scores) && scores.length > 0;
  } catch (e) {
    return false;
  }
}

function hasField(r) {
  if (!cfg.json_field) return true;
  try {
    const v = r.json(cfg.json_field);
    return v !== undefined && v !== null;
  } catch (e) {
    return false;
  }
}

function ok(r) {
  if (protocol === 'v2') return v2RestOk(r);
  if (protocol === 'http') return r.status === (cfg.success_status || 200) && hasField(r);
  return r.status === 200 && hasScores(r);
}

function request() {
  const i = nextTarget();
  const res = http.request(method, urls[i], sendBody ? body : null, params[i]);
  check(res, { [cfg.check_name]: ok });
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
