// The Prometheus text format, read enough for the overview: samples with labels, and
// quantiles of a histogram as Prometheus's histogram_quantile estimates them.
const LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match) continue;
    const [, name, labelText, raw] = match;
    const labels = {};
    for (const [, key, value] of (labelText || "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, "$1");
    const value = raw === "+Inf" ? Infinity : Number(raw);
    if (!out.has(name)) out.set(name, []);
    out.get(name).push({ name, labels, value, key: labelText || "" });
  }
  return out;
}

export function samples(metrics, name) {
  return metrics.get(name) || [];
}

export function sample(metrics, name, labels = {}) {
  const found = samples(metrics, name).find((s) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found ? found.value : null;
}

// The quantile of a histogram's observations since ``before`` (another scrape) when given,
// else since the process started.
export function quantile(metrics, name, q, before = null) {
  const earlier = new Map(before ? samples(before, `${name}_bucket`).map((s) => [s.key, s.value]) : []);
  const buckets = samples(metrics, `${name}_bucket`)
    .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le),
      count: s.value - (earlier.get(s.key) || 0) }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.length ? buckets[buckets.length - 1].count : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1e-12);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}
