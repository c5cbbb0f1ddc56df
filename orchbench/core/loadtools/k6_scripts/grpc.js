// gRPC: cfg.method (tensorflow.serving.PredictionService/Predict, or for protocol v2
// inference.GRPCInferenceService/ModelInfer) with the request decoded (in Python, protobuf's JSON
// mapping) from the binary payload; check StatusOK + outputs.scores (v2: v2_checks.js).
// One target (cfg.target), or the two arms alternating call by call (cfg.targets, see common.js),
// each on its own client and connection.
// A failed connect leaves no grpc_req_duration sample, so it is recorded in `orchbench_connect_errors`.
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import { Trend } from 'k6/metrics';
import { cfg, nextTarget, summaryFiles, targetHeaders, targets, warmupIteration } from './common.js';

export { setup } from './common.js';
import { v2GrpcAnyOutput, v2GrpcOk } from './v2_checks.js';

const all = targets || [cfg];
const addresses = all.map((t) => t.target);
const plaintext = all.map((t) => !t.tls);
const metadata = all.map((t) => {
  const h = targetHeaders(t);
  const out = {};
  for (const k of Object.keys(h)) out[k.toLowerCase()] = h[k]; // gRPC metadata keys are lower-case
  return out;
});
const v2 = cfg.protocol === 'v2';
const clients = addresses.map(() => {
  const c = new grpc.Client();
  c.loadProtoset(cfg.protoset);
  return c;
});
const connected = addresses.map(() => false);
const message = JSON.parse(open(cfg.request_json));
// v2: each arm's request names that arm's model (arms of a cluster kind serve different names)
const messages = all.map((t) =>
  v2 && t.model_name ? Object.assign({}, message, { model_name: t.model_name }) : message,
);
// v2 answer checks: orchbench's flowers model (scores, prediction), or "outputs": any non-empty output
// (a third-party runtime names its outputs itself)
const checks = all.map((t) => (t.answer_check === 'outputs' ? v2GrpcAnyOutput : v2GrpcOk));
const connectErrors = new Trend('orchbench_connect_errors', true);

export const options = cfg.options;

function request() {
  const i = nextTarget();
  const client = clients[i];
  if (!connected[i]) {
    const t0 = Date.now();
    try {
      client.connect(addresses[i], { plaintext: plaintext[i], timeout: cfg.timeout });
      connected[i] = true;
    } catch (e) {
      connectErrors.add(Date.now() - t0, { error: String(e).slice(0, 200) });
      return;
    }
  }
  const res = client.invoke(cfg.method, messages[i], { timeout: cfg.timeout, metadata: metadata[i] });
  check(res, {
    [cfg.check_name]: (r) =>
      v2
        ? checks[i](r)
        : r.status === grpc.StatusOK && !!r.message && !!r.message.outputs && !!r.message.outputs.scores,
  });
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
