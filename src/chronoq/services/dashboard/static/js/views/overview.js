// Overview: first the signed-in user's own figures, from the API with their credentials
// (GET /v1/whoami; their jobs per status, one GET /v1/jobs?status=…&limit=100 each, once
// per visit), then the server's own numbers from /metrics (Prometheus text, read by the
// page): each backend's health, the backlog, the leader and live members, runs finished
// by outcome (and per minute while the page is open, charted), fire-lag percentiles
// (charted per scrape interval), skipped fires. Those are cluster-wide figures, not one
// user's (/metrics carries no job data, needs no sign-in).
import { get, whoami } from "../api.js";
import { lineChart } from "../charts.js";
import { alertBox, badge, every, facts, h, heading, replace } from "../dom.js";
import { parseMetrics, quantile, sample, samples } from "../metrics.js";
import { JOB_STATUSES, jobsLink } from "./jobs.js";

const COUNT_UP_TO = 100; // one page per status: "100+" beyond, never a walk of every job

const REFRESH_MS = 5000;
const HISTORY = 60; // scrapes kept for the charts: the last 5 minutes
const OUTCOMES = ["COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED", "DEAD"];

async function scrape() {
  const r = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
  if (!r.ok) throw new Error(`/metrics answered ${r.status}`);
  return { at: Date.now(), metrics: parseMetrics(await r.text()) };
}

export async function render(main, { signal }) {
  const body = h("div", { "aria-live": "off" });
  const mine = h("section", { "aria-labelledby": "h-you" }, h("h2", { id: "h-you" }, "You"),
    h("p", { class: "muted" }, "Loading…"));
  replace(main, heading("Overview"), mine,
    h("p", { class: "hint server-note" }, "The rest is the whole server's, not yours: from the metrics of the api process this page talks to " +
      "(GET /metrics): counters count since that process started; the backlog and " +
      "members are the leader's view. Refreshed every 5 s."),
    body);
  yours(mine, signal);
  const first = await scrape();
  const history = [first];
  const draw = () => replace(body, ...sections(history[history.length - 1], first),
    charts(history));
  draw();
  every(REFRESH_MS, signal, async () => {
    try {
      history.push(await scrape());
      if (history.length > HISTORY) history.shift();
      draw();
    } catch (exc) {
      replace(body, alertBox(exc.message));
    }
  });
}

async function yours(section, signal) {
  try {
    const [me, ...pages] = await Promise.all([whoami(),
      ...JOB_STATUSES.map((status) => get("/v1/jobs", { status, limit: COUNT_UP_TO }))]);
    if (signal.aborted) return;
    const count = (p) => `${p.items.length}${p.next_cursor ? "+" : ""}`;
    replace(section, section.firstChild,
      facts([
        ["Signed in as", me.user_id],
        ["Shell (cmd:) jobs", me.shell_allowed ? "allowed" : "not allowed"],
      ]),
      table(["Status", "Your jobs"], JOB_STATUSES.map((status, i) => [
        h("a", { href: `#${jobsLink({ status })}` }, status.toLowerCase()), count(pages[i])])));
  } catch (exc) {
    if (!signal.aborted) replace(section, section.firstChild, alertBox(exc.message));
  }
}

function number(v, digits = 0) {
  return v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(digits);
}

function seconds(v) {
  if (v === null || Number.isNaN(v)) return "—";
  return v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;
}

function sections(now, first) {
  const m = now.metrics;
  const minutes = (now.at - first.at) / 60_000;
  const leader = sample(m, "coordinator_leader");
  const members = samples(m, "cluster_members_alive");
  const finished = samples(m, "runs_finished_total");
  const skipped = samples(m, "fires_skipped_total");
  const lag = (q) => quantile(m, "job_fire_lag_seconds", q);
  const rate = (s) => {
    const before = samples(first.metrics, s.name).find((x) => x.key === s.key);
    return minutes > 0.05 && before ? number((s.value - before.value) / minutes, 1) : "…";
  };
  const backends = samples(m, "backend_up");
  return [
    h("section", { "aria-labelledby": "h-backends" }, h("h2", { id: "h-backends" }, "Backends"),
      table(["Backend", "Health"], backends.map((s) => [s.labels.backend,
        badge(s.value >= 1 ? "UP" : "DOWN")]))),
    h("section", { "aria-labelledby": "h-backlog" }, h("h2", { id: "h-backlog" }, "Backlog"),
      facts([
        ["Fires due, not yet claimed", number(sample(m, "dispatch_backlog", { state: "due" }))],
        ["Runs waiting for a worker", number(sample(m, "dispatch_backlog", { state: "queued" }))],
        ["Runs executing", number(sample(m, "dispatch_backlog", { state: "running" }))],
        ["Oldest due fire waiting", seconds(sample(m, "dispatch_oldest_due_age_seconds"))],
      ])),
    h("section", { "aria-labelledby": "h-cluster" }, h("h2", { id: "h-cluster" }, "Cluster"),
      facts([
        ["This process is the leader", leader === null ? "—" : leader >= 1 ? "yes" : "no"],
        ["Leader epoch", number(sample(m, "coordinator_leader_epoch"))],
        ...members.map((s) => [`Live ${s.labels.role || "members"}`, number(s.value)]),
      ])),
    h("section", { "aria-labelledby": "h-runs" }, h("h2", { id: "h-runs" }, "Runs finished"),
      table(["Outcome", "Total", "Per minute (while this page is open)"],
        finished.map((s) => [s.labels.status, number(s.value), rate(s)]))),
    h("section", { "aria-labelledby": "h-lag" }, h("h2", { id: "h-lag" }, "Fire lag"),
      facts([["p50", seconds(lag(0.5))], ["p95", seconds(lag(0.95))], ["p99", seconds(lag(0.99))]])),
    h("section", { "aria-labelledby": "h-skips" }, h("h2", { id: "h-skips" }, "Fires skipped"),
      table(["Reason", "Fires"], skipped.map((s) => [s.labels.reason, number(s.value)]))),
  ];
}

// Per scrape interval: runs finished per minute by outcome, and the fire lag of the fires
// of that interval (p50, p99).
function charts(history) {
  const steps = history.slice(1).map((now, i) => ({ now, before: history[i] }));
  const perMinute = (status) => steps.map(({ now, before }) => {
    const count = (m) => sample(m.metrics, "runs_finished_total", { status }) || 0;
    const minutes = (now.at - before.at) / 60_000;
    return minutes > 0 ? Math.max(count(now) - count(before), 0) / minutes : null;
  });
  const lag = (q) => steps.map(({ now, before }) => {
    const v = quantile(now.metrics, "job_fire_lag_seconds", q, before.metrics);
    return v === null ? null : v * 1000;
  });
  const seen = new Set(samples(history[history.length - 1].metrics, "runs_finished_total")
    .map((s) => s.labels.status));
  const outcomes = OUTCOMES.filter((o) => seen.has(o) || o === "COMPLETED" || o === "FAILED");
  return h("section", { "aria-labelledby": "h-charts" },
    h("h2", { id: "h-charts" }, "The last minutes"),
    h("div", { class: "charts" },
      lineChart(outcomes.map((o) => ({ name: o.toLowerCase(), cls: o.toLowerCase(),
        values: perMinute(o) })), { label: "Runs finished per minute", unit: "/min" }),
      lineChart([{ name: "p50", cls: "p50", values: lag(0.5) },
        { name: "p99", cls: "p99", values: lag(0.99) }], { label: "Fire lag", unit: " ms" })));
}

function table(columns, rows) {
  if (!rows.length) return h("p", { class: "empty" }, "Not reported by this server.");
  return h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      row.map((cell, i) => h("td", { "data-label": columns[i] }, cell))))));
}
