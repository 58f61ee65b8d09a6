// Small line charts drawn as SVG from numbers the page already has (no library, no
// canvas): one polyline per series over the same x axis, the y axis from 0 to the
// largest value shown. The chart is an image to assistive technology (role="img" with a
// label saying the newest values); the tables beside it carry the numbers themselves.
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 80;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// series: [{ name, cls, values: [number | null, ...] }] (all the same length; null: a gap)
export function lineChart(series, { label, unit = "" }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const length = Math.max(0, ...series.map((s) => s.values.length));
  const top = Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
  const newest = series.map((s) => {
    const last = [...s.values].reverse().find((v) => v !== null);
    return `${s.name} ${last === undefined ? "none yet" : `${round(last)}${unit}`}`;
  });
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none",
    role: "img", "aria-label": `${label}: ${newest.join(", ")}` });
  chart.append(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "axis" }));
  const scale = top > 0 ? top : 1; // all zero: flat lines along the bottom
  if (length > 1) {
    for (const s of series) {
      const points = s.values.map((v, i) => (v === null ? null
        : `${(i * WIDTH) / (length - 1)},${HEIGHT - 2 - ((HEIGHT - 4) * v) / scale}`));
      for (const run of runs(points)) {
        chart.append(svg("polyline", { points: run.join(" "), class: `line ${s.cls}` }));
      }
    }
  }
  const caption = document.createElement("figcaption");
  caption.textContent = length > 1
    ? `${label} (top of the chart: ${round(top)}${unit})` : `${label}: collecting…`;
  const legend = document.createElement("ul");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${s.cls}`;
    item.append(swatch, s.name);
    legend.append(item);
  }
  figure.append(chart, caption, legend);
  return figure;
}

// Consecutive non-null points, as separate polylines (a gap breaks the line).
function runs(points) {
  const out = [];
  let current = [];
  for (const p of points) {
    if (p === null) {
      if (current.length > 1) out.push(current);
      current = [];
    } else current.push(p);
  }
  if (current.length > 1) out.push(current);
  return out;
}

function round(v) {
  return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(3);
}
