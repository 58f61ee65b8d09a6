// A job's runs, newest first: a timeline of durations (one bar per attempt, coloured by
// outcome) and a table linking to each run's page.
import { badge, duration, h, shortId, timeEl } from "../dom.js";

export function runHref(jobId, runId) {
  return `#/jobs/${encodeURIComponent(jobId)}/runs/${encodeURIComponent(runId)}`;
}

function millis(run) {
  if (!run.started_at) return 0;
  const end = run.completed_at ? new Date(run.completed_at) : new Date();
  return Math.max(0, end - new Date(run.started_at));
}

export function timeline(runs) {
  const shown = runs.slice(0, 50).reverse(); // oldest on the left
  const longest = Math.max(1, ...shown.map(millis));
  return h("figure", { class: "timeline" },
    h("figcaption", {}, `Last ${shown.length} attempts, oldest first; bar height is the duration`),
    h("ol", { class: "bars" }, shown.map((run) => {
      const pct = Math.max(4, Math.round((100 * millis(run)) / longest));
      const text = `${run.status}, attempt ${run.attempt}, scheduled ${run.scheduled_for}, ` +
        `took ${duration(run.started_at, run.completed_at)}`;
      return h("li", {},
        h("a", { href: runHref(run.job_id, run.run_id), title: text, "aria-label": text,
          class: `bar s-${run.status.toLowerCase()}`, style: null, "data-pct": pct }));
    })));
}

// Bar heights are set through the CSSOM (the page's CSP has no 'unsafe-inline' styles).
export function sizeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-pct]")) bar.style.height = `${bar.dataset.pct}%`;
}

export function runsTable(runs, jobId) {
  return h("table", { class: "stack runs" },
    h("thead", {}, h("tr", {}, ["Run", "Attempt", "Status", "Scheduled for", "Started",
      "Duration", "Worker", "Exit code"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, runs.map((run) => h("tr", {},
      h("td", { "data-label": "Run" },
        h("a", { href: runHref(jobId, run.run_id), class: "mono" }, shortId(run.run_id)),
        run.manual ? h("span", { class: "muted" }, " manual") : null),
      h("td", { "data-label": "Attempt" }, String(run.attempt)),
      h("td", { "data-label": "Status" }, badge(run.status)),
      h("td", { "data-label": "Scheduled for" }, timeEl(run.scheduled_for)),
      h("td", { "data-label": "Started" }, timeEl(run.started_at)),
      h("td", { "data-label": "Duration" }, duration(run.started_at, run.completed_at)),
      h("td", { "data-label": "Worker", class: "wrap" }, run.worker_id || "—"),
      h("td", { "data-label": "Exit code" }, run.exit_code === null ? "—" : String(run.exit_code))))));
}
