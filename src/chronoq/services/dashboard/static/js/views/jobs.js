// The jobs list: one page from GET /v1/jobs at a time (the API's cursor; never all
// jobs), filtered by the API (status, project, kind, queue, search). Each listed job carries its
// newest runs' outcomes (last_run, recent_run_statuses), so a page is one list request;
// the schedule in words comes from the preview endpoint (once per distinct schedule).
import { get, preview } from "../api.js";
import { badge, field, h, heading, relative, replace, shortId, timeEl } from "../dom.js";

export const JOB_STATUSES = ["PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"];
const KINDS = [["", "Any kind"], ["once", "One-shot"], ["recurring", "Recurring"]];
const PAGE_SIZES = ["25", "50", "100"];
const ENDED = new Set(["COMPLETED", "FAILED", "TIMED_OUT", "DEAD", "CANCELLED", "SKIPPED",
  "RETRY_SCHEDULED", "INTERRUPTED"]);

// The filters, as they appear in the page's hash and as the API takes them. A new filter
// is one entry here and one control in filterForm.
const FILTERS = [
  { hash: "status", api: "status" }, // comma-separated, as the API also takes them
  { hash: "project", api: "project_id" },
  { hash: "kind", api: "kind" },
  { hash: "queue", api: "queue" },
  { hash: "q", api: "q" },
];

// Cursors of the pages before this one, for "Previous" (per filter; a reload starts over).
let trail = { key: "", cursors: [] };

export function readFilters(query) {
  const chosen = Object.fromEntries(FILTERS.map((f) => [f.hash, query.get(f.hash) || ""]));
  chosen.status = chosen.status.split(",").filter((s) => JOB_STATUSES.includes(s)).join(",");
  if (!KINDS.some(([value]) => value === chosen.kind)) chosen.kind = "";
  return chosen;
}

export function jobsLink(chosen, limit = "25", cursor = "") {
  const q = new URLSearchParams();
  for (const f of FILTERS) if (chosen[f.hash]) q.set(f.hash, chosen[f.hash]);
  if (limit !== "25") q.set("limit", limit);
  if (cursor) q.set("cursor", cursor);
  return `/jobs${q.size ? `?${q}` : ""}`;
}

export async function render(main, { query, signal, go }) {
  const chosen = readFilters(query);
  const limit = PAGE_SIZES.includes(query.get("limit")) ? query.get("limit") : "25";
  const cursor = query.get("cursor") || "";
  const key = JSON.stringify([chosen, limit]);
  if (trail.key !== key || !cursor) trail = { key, cursors: [] };

  const asked = { limit, cursor };
  for (const f of FILTERS) asked[f.api] = chosen[f.hash];
  const page = await get("/v1/jobs", asked);
  if (signal.aborted) return;
  const rows = page.items.map((job) => row(job));
  const number = trail.cursors.length + 1;
  const prev = h("button", { type: "button", disabled: !cursor }, "← Previous");
  prev.addEventListener("click", () => go(jobsLink(chosen, limit, trail.cursors.pop() || "")));
  const next = h("button", { type: "button", disabled: !page.next_cursor }, "Next →");
  next.addEventListener("click", () => {
    trail.cursors.push(cursor);
    go(jobsLink(chosen, limit, page.next_cursor));
  });
  const filtered = FILTERS.some((f) => chosen[f.hash]);
  const table = page.items.length
    ? h("table", { class: "jobs stack" },
      h("caption", { class: "visually-hidden" }, `Jobs, page ${number}`),
      h("thead", {}, h("tr", {}, ["Job", "Project", "Status", "Schedule", "Next fire",
        "Last run"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => r.tr)))
    : h("p", { class: "empty" }, cursor ? "No more jobs." : "No jobs match. ",
      cursor ? null : filtered ? h("a", { href: "#/jobs" }, "Show every job")
        : h("a", { href: "#/submit" }, "Submit one"));
  replace(main,
    heading("Jobs"),
    filterForm(chosen, limit, go),
    h("p", { class: "visually-hidden", role: "status" },
      `${page.items.length} job${page.items.length === 1 ? "" : "s"} on page ${number}`),
    table,
    h("nav", { class: "pager", "aria-label": "Pages" }, prev,
      h("span", { "aria-live": "polite" }, `Page ${number}`), next));
  fillIn(rows, signal);
}

function filterForm(chosen, limit, go) {
  const picked = new Set(chosen.status.split(",").filter(Boolean));
  const boxes = JOB_STATUSES.map((s) => h("input", { type: "checkbox", name: "status",
    value: s, id: `filter-status-${s.toLowerCase()}`, checked: picked.has(s) }));
  const statuses = h("fieldset", { class: "checks" },
    h("legend", {}, "Status"),
    boxes.map((box) => h("label", { class: "inline", for: box.id }, box, box.value.toLowerCase())));
  const project = h("input", { type: "text", name: "project", value: chosen.project,
    maxlength: 200, autocomplete: "off", spellcheck: "false" });
  const kind = h("select", { name: "kind" },
    KINDS.map(([value, text]) => h("option", { value, selected: value === chosen.kind }, text)));
  const queue = h("input", { type: "text", name: "queue", value: chosen.queue,
    maxlength: 64, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off", spellcheck: "false" });
  const search = h("input", { type: "search", name: "q", value: chosen.q, maxlength: 200,
    autocomplete: "off", spellcheck: "false" });
  const perPage = h("select", { name: "limit" },
    PAGE_SIZES.map((n) => h("option", { value: n, selected: n === limit }, n)));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter jobs" },
    statuses,
    field("filter-project", "Project", project, "Exact project id"),
    field("filter-kind", "Kind", kind),
    field("filter-queue", "Queue", queue, "Exact queue name"),
    field("filter-q", "Search", search, "Start of a job id, or part of a project id"),
    field("filter-limit", "Per page", perPage),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      FILTERS.some((f) => chosen[f.hash])
        ? h("a", { href: `#${jobsLink({}, limit)}` }, "Clear filters") : null));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(jobsLink({
      status: boxes.filter((b) => b.checked).map((b) => b.value).join(","),
      project: project.value.trim(),
      kind: kind.value,
      queue: queue.value.trim(),
      q: search.value.trim(),
    }, perPage.value));
  });
  return form;
}

function row(job) {
  const schedule = h("td", { "data-label": "Schedule" },
    job.cron_schedule ? h("code", {}, job.cron_schedule) : h("span", { class: "muted" }, "one-shot"));
  const tr = h("tr", {},
    h("td", { "data-label": "Job" },
      h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}`, class: "mono" },
        shortId(job.job_id)), h("span", { class: "visually-hidden" }, ` ${job.job_id}`)),
    h("td", { "data-label": "Project", class: "wrap" }, job.project_id),
    h("td", { "data-label": "Status" }, badge(job.status)),
    schedule,
    h("td", { "data-label": "Next fire" }, timeEl(job.next_fire_at)),
    h("td", { "data-label": "Last run" }, lastRun(job)));
  return { job, tr, schedule };
}

// The newest run (a link to it, with when it ended or was due) and the sparkline.
function lastRun(job) {
  const last = job.last_run;
  if (!last) return h("span", { class: "muted" }, "no run yet");
  const when = last.completed_at || last.started_at || last.scheduled_for;
  return h("span", { class: "last-run" },
    h("a", { href: `#/jobs/${encodeURIComponent(job.job_id)}/runs/${encodeURIComponent(last.run_id)}` },
      badge(last.status)), " ",
    h("time", { datetime: when, title: when, class: "muted" }, relative(when)), " ",
    sparkline(job.recent_run_statuses || []));
}

// The schedules in words, after the table is shown (one preview per distinct schedule).
function fillIn(rows, signal) {
  for (const r of rows) {
    if (!r.job.cron_schedule) continue;
    preview(r.job.cron_schedule, r.job.timezone).then((p) => {
      if (!signal.aborted) {
        replace(r.schedule, h("span", {}, p.description, " ",
          h("code", { class: "muted" }, r.job.cron_schedule)));
      }
    }, () => {});
  }
}

// The recent runs' outcomes, oldest first, one tick each; the label says the success rate.
function sparkline(statuses) {
  const ended = statuses.filter((s) => ENDED.has(s));
  const ok = ended.filter((s) => s === "COMPLETED").length;
  const rate = ended.length ? `${ok} of the last ${ended.length} ended runs completed` : "no run ended yet";
  return h("span", { class: "spark", role: "img", "aria-label": rate, title: rate },
    [...statuses].reverse().map((s) => h("span", { class: `tick s-${s.toLowerCase()}` })));
}
