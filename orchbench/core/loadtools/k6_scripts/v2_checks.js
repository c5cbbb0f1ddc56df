// Open Inference Protocol ("v2") answer checks for the k6 scripts: the counterparts of serving.v2's
// check_rest_answer / check_grpc_answer. An answer counts when its status is OK and it has the
// outputs scores and prediction (classes, if there, as many as the scores; when `topClass` is given,
// that top class).
// REST answers are JSON ({"outputs": [{"name", "datatype", "shape", "data"}, ...]}); gRPC answers
// come from k6 as protojson (camelCase fields, int64 values as strings).
import grpc from 'k6/net/grpc';

function byName(outputs) {
  const out = {};
  for (const o of outputs || []) out[o.name] = o;
  return out;
}

function topOk(prediction, topClass) {
  return topClass === undefined || topClass === null || String(prediction) === String(topClass);
}

export function v2RestOk(r, topClass) {
  if (r.status !== 200) return false;
  try {
    const outs = byName(r.json('outputs'));
    const scores = outs.scores && outs.scores.data;
    const classes = outs.classes ? outs.classes.data : undefined;
    const prediction = outs.prediction && outs.prediction.data;
    return (
      Array.isArray(scores) && scores.length > 0 &&
      (classes === undefined || (Array.isArray(classes) && classes.length === scores.length)) &&
      Array.isArray(prediction) && prediction.length === 1 && topOk(prediction[0], topClass)
    );
  } catch (e) {
    return false;
  }
}

export function v2GrpcOk(r, topClass) {
  if (r.status !== grpc.StatusOK || !r.message) return false;
  const outs = byName(r.message.outputs);
  const c = (name) => (outs[name] && outs[name].contents) || {};
  const scores = c('scores').fp32Contents;
  const classes = outs.classes ? c('classes').int64Contents : undefined;
  const prediction = c('prediction').int64Contents;
  return (
    Array.isArray(scores) && scores.length > 0 &&
    (classes === undefined || (Array.isArray(classes) && classes.length === scores.length)) &&
    Array.isArray(prediction) && prediction.length === 1 && topOk(prediction[0], topClass)
  );
}

// A third-party runtime's answer (its own output names): status OK and at least one output with
// contents (any *Contents list non-empty) or raw output bytes.
export function v2GrpcAnyOutput(r) {
  if (r.status !== grpc.StatusOK || !r.message) return false;
  const outputs = r.message.outputs || [];
  const raw = r.message.rawOutputContents || [];
  if (raw.length > 0 && outputs.length > 0) return true;
  return outputs.some((o) => Object.values(o.contents || {}).some((v) => Array.isArray(v) && v.length > 0));
}
