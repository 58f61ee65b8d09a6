// The jobs list: one page from GET /v1/jobs at a time (the API's cursor; never all
// jobs), filtered by status and project. The schedule in words comes from the preview
// endpoint (once per distinct schedule), the last outcome and a success sparkline from each
// shown job's newest runs.
import { get, jobPath, preview } from "../api.js";
import { alertBox, badge, field, h, heading, replace, shortId, timeEl } from "../dom.js";

export const JOB_STATUSES = ["PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"];
const PAGE_SIZES = ["25", "50", "100"];
const LOOKUPS_AT_ONCE = 6;
const RECENT_RUNS = 10;
const ENDED = new Set(["COMPLETED", "FAILED", "TIMED_OUT", "DEAD", "CANCELLED", "SKIPPED",
  "RETRY_SCHEDULED", "INTERRUPTED"]);

// Cursors of the pages before this one, for "Previous" (per filter; a reload starts over).
let trail = { key: "", cursors: [] };

export async function render(main, { query, signal, go }) {
  const status = query.get("status") || "";
  const project = query.get("project") || "";
  const limit = PAGE_SIZES.includes(query.get("limit")) ? query.get("limit") : "25";
  const cursor = query.get("cursor") || "";
  const key = JSON.stringify([status, project, limit]);
  if (trail.key !== key || !cursor) trail = { key, cursors: [] };

  const link = (next) => {
    const q = new URLSearchParams();
    if (status) q.set("status", status);
    if (project) q.set("project", project);
    if (limit !== "25") q.set("limit", limit);
    if (next) q.set("cursor", next);
    return `/jobs${q.size ? `?${q}` : ""}`;
  };

  const statusSelect = h("select", { name: "status" },
    h("option", { value: "" }, "Any status"),
    JOB_STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const projectInput = h("input", { type: "search", name: "project", value: project,
    maxlength: 200, autocomplete: "off" });
  const limitSelect = h("select", { name: "limit" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, n)));
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    field("filter-status", "Status", statusSelect),
    field("filter-project", "Project", projectInput),
    field("filter-limit", "Per page", limitSelect),
    h("button", { type: "submit" }, "Apply"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (projectInput.value.trim()) q.set("project", projectInput.value.trim());
    if (limitSelect.value !== "25") q.set("limit", limitSelect.value);
    go(`/jobs${q.size ? `?${q}` : ""}`);
  });

  const page = await get("/v1/jobs", { status, project_id: project, limit, cursor });
  if (signal.aborted) return;
  const rows = page.items.map((job) => row(job));
  const number = trail.cursors.length + 1;
  const prev = h("button", { type: "button", disabled: !cursor }, "← Previous");
  prev.addEventListener("click", () => {
    const back = trail.cursors.pop();
    go(link(back || ""));
  });
  const next = h("button", { type: "button", disabled: !page.next_cursor }, "Next →");
  next.addEventListener("click", () => {
    trail.cursors.push(cursor);
    go(link(page.next_cursor));
  });
  const table = page.items.length
    ? h("table", { class: "jobs stack" },
      h("caption", { class: "visually-hidden" }, `Jobs, page ${number}`),
      h("thead", {}, h("tr", {}, ["Job", "Project", "Status", "Schedule", "Next fire",
        "Recent runs"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => r.tr)))
    : h("p", { class: "empty" }, cursor ? "No more jobs." : "No jobs match. ",
      cursor ? null : h("a", { href: "#/submit" }, "Submit one"));
  replace(main,
    heading("Jobs"),
    filters,
    table,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev,
      h("span", { "aria-live": "polite" }, `Page ${number}`), next));
  fillIn(rows, signal);
}

function row(job) {
  const schedule = h("td", { "data-label": "Schedule" });
  const outcome = h("td", { "data-label": "Recent runs" }, h("span", { class: "muted" }, "…"));
  if (job.cron_schedule) {
    replace(schedule, h("code", {}, job.cron_schedule));
  } else {
    replace(schedule, h("span", { class: "muted" }, "one-shot"));
  }
  const tr = h("tr", {},
    h("td", { "data-label": "Job" },
      h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}`, class: "mono" },
        shortId(job.job_id)), h("span", { class: "visually-hidden" }, ` ${job.job_id}`)),
    h("td", { "data-label": "Project", class: "wrap" }, job.project_id),
    h("td", { "data-label": "Status" }, badge(job.status)),
    schedule,
    h("td", { "data-label": "Next fire" }, timeEl(job.next_fire_at)),
    outcome);
  return { job, tr, schedule, outcome };
}

// The words and outcomes, a few requests at a time, after the table is shown.
async function fillIn(rows, signal) {
  for (const r of rows) {
    if (!r.job.cron_schedule) continue;
    preview(r.job.cron_schedule, r.job.timezone).then((p) => {
      if (!signal.aborted) {
        replace(r.schedule, h("span", {}, p.description, " ",
          h("code", { class: "muted" }, r.job.cron_schedule)));
      }
    }, () => {});
  }
  const queue = [...rows];
  const worker = async () => {
    while (queue.length && !signal.aborted) {
      const r = queue.shift();
      try {
        const runs = await get(`${jobPath(r.job.job_id)}/runs`, { limit: RECENT_RUNS });
        const last = runs.items[0];
        replace(r.outcome, last
          ? [h("a", { href: `#/jobs/${encodeURIComponent(r.job.job_id)}/runs/${encodeURIComponent(last.run_id)}` },
            badge(last.status)), " ", sparkline(runs.items)]
          : h("span", { class: "muted" }, "no run yet"));
      } catch (exc) {
        replace(r.outcome, alertBox(exc.message));
      }
    }
  };
  await Promise.all(Array.from({ length: LOOKUPS_AT_ONCE }, worker));
}

// The recent runs' outcomes, oldest first, one tick each; the label says the success rate.
function sparkline(runs) {
  const ended = runs.filter((r) => ENDED.has(r.status));
  const ok = ended.filter((r) => r.status === "COMPLETED").length;
  const rate = ended.length ? `${ok} of the last ${ended.length} ended runs completed` : "no run ended yet";
  return h("span", { class: "spark", role: "img", "aria-label": rate, title: rate },
    [...runs].reverse().map((r) => h("span", { class: `tick s-${r.status.toLowerCase()}` })));
}
