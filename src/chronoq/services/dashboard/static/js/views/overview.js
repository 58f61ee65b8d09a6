// Overview: first the signed-in user's own figures, from the API with their credentials
// (GET /v1/whoami; their jobs per status, one GET /v1/jobs?status=…&limit=100 each, once
// per visit), then the server's own numbers from /metrics (Prometheus text, read by the
// page): the backlog, the leader and live members, runs finished by outcome (and per
// minute while the page is open), fire-lag percentiles, skipped fires. Those are
// cluster-wide figures, not one user's (/metrics carries no job data, needs no sign-in).
import { get, whoami } from "../api.js";
import { alertBox, every, facts, h, heading, replace } from "../dom.js";
import { parseMetrics, quantile, sample, samples } from "../metrics.js";
import { JOB_STATUSES, jobsLink } from "./jobs.js";

const COUNT_UP_TO = 100; // one page per status: "100+" beyond, never a walk of every job

const REFRESH_MS = 5000;

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
  const draw = (now) => replace(body, ...sections(now, first));
  draw(first);
  every(REFRESH_MS, signal, async () => {
    try {
      draw(await scrape());
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
  return [
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

function table(columns, rows) {
  if (!rows.length) return h("p", { class: "empty" }, "Not reported by this server.");
  return h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      row.map((cell, i) => h("td", { "data-label": columns[i] }, cell))))));
}
