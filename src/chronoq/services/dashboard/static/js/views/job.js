// One job: its schedule and policies, the next 10 fires (DST marked), the run history
// (a duration timeline and a table), the fire ledger, and the control actions. The job
// and its runs are read again every 2 s while the page is open.
import { ApiError, call, get, jobPath, preview } from "../api.js";
import { alertBox, badge, every, facts, h, heading, replace, shortId, timeEl, wallTime } from "../dom.js";
import { editForm } from "./edit.js";
import { runsTable, sizeBars, timeline } from "./runs.js";

const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const REFRESH_MS = 2000;

export async function render(main, { params, signal }) {
  const [jobId] = params;
  const path = jobPath(jobId);
  let job = await get(path);
  if (signal.aborted) return;
  const title = heading(`Job ${shortId(jobId)}`);
  const summary = h("div", { class: "summary" });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Job actions" });
  const said = h("div", { "aria-live": "polite", class: "action-status" });
  const editBox = h("div", { class: "edit-box" });
  const schedule = h("section", { "aria-labelledby": "h-schedule" });
  const fires = h("section", { "aria-labelledby": "h-fires" });
  const runs = h("section", { "aria-labelledby": "h-runs" },
    h("h2", { id: "h-runs" }, "Runs"), h("p", { class: "muted" }, "Loading…"));
  const ledger = h("section", { "aria-labelledby": "h-ledger", hidden: true });
  replace(main, title, summary, actions, said, editBox, schedule, fires, runs, ledger);

  const act = async (label, method, suffix, query) => {
    replace(said, h("p", { class: "muted" }, `${label}…`));
    try {
      const answer = await call(method, path + suffix, { query });
      replace(said, alertBox(
        answer.run_id ? `${label}: run ${shortId(answer.run_id)} queued.` : `${label}: done.`,
        "ok"));
    } catch (exc) {
      replace(said, alertBox(`${label} failed: ${exc.message}`));
      drawActions(actions, job, act);
    }
    await refresh();
  };

  const edit = () => {
    const close = () => {
      replace(editBox);
      actions.querySelector("[data-edit]")?.focus();
    };
    replace(editBox, editForm(job, (changed) => {
      job = changed;
      replace(editBox);
      replace(said, alertBox("Saved: the changes apply from the next fire.", "ok"));
      draw();
      drawFires(fires, job, signal);
    }, close));
    editBox.querySelector("input, textarea, select")?.focus();
  };
  act.edit = edit;

  let drawn = "";
  let runsDrawn = "";
  // Redrawn only when something changed: a redraw would take the keyboard focus away.
  const draw = () => {
    const state = JSON.stringify(job);
    if (state === drawn) return;
    const statusChanged = !drawn || JSON.parse(drawn).status !== job.status;
    drawn = state;
    replace(summary, facts([
      ["Status", badge(job.status)],
      ["Project", job.project_id],
      ["Job id", h("code", {}, job.job_id)],
      ["Payload", job.payload === null
        ? h("span", { class: "muted" }, `offloaded (${job.payload_size} bytes)`)
        : h("pre", { class: "payload" }, job.payload)],
      ["Created", timeEl(job.created_at)],
    ]));
    if (statusChanged) drawActions(actions, job, act);
    drawSchedule(schedule, job);
  };

  const refresh = async () => {
    const [fresh, runList] = await Promise.all([get(path), get(`${path}/runs`, { limit: 50 })]);
    if (signal.aborted) return;
    job = fresh;
    draw();
    const runsState = JSON.stringify(runList.items);
    if (runsState === runsDrawn) return drawLedger(ledger, path);
    runsDrawn = runsState;
    replace(runs, h("h2", { id: "h-runs" }, "Runs"),
      runList.items.length
        ? [timeline(runList.items), runsTable(runList.items, job.job_id)]
        : h("p", { class: "empty" }, "No run yet."));
    sizeBars(runs);
    await drawLedger(ledger, path);
  };

  draw();
  drawFires(fires, job, signal);
  await refresh();
  every(REFRESH_MS, signal, refresh);
}

function drawActions(box, job, act) {
  const recurring = Boolean(job.cron_schedule);
  const live = !TERMINAL.has(job.status);
  const button = (text, onclick, enabled, cls = "") =>
    h("button", { type: "button", class: cls, disabled: !enabled, onclick }, text);
  const catchUp = h("input", { type: "checkbox", id: "resume-catch-up" });
  const cancel = button("Cancel job…", () => {
    replace(box, h("span", {}, "Cancel this job? Its running runs are stopped."),
      button("Yes, cancel it", () => act("Cancel", "DELETE", ""), true, "danger"),
      button("Keep it", () => drawActions(box, job, act), true));
    box.querySelector(".danger").focus();
  }, live, "danger");
  replace(box,
    button("Trigger now", () => act("Trigger", "POST", ":trigger"), live && recurring),
    button("Pause", () => act("Pause", "POST", ":pause"), live && job.status !== "PAUSED"),
    button("Resume", () => act("Resume", "POST", ":resume",
      catchUp.checked ? { catch_up: "true" } : undefined), job.status === "PAUSED"),
    job.status === "PAUSED"
      ? h("span", { class: "inline" }, catchUp, h("label", { for: "resume-catch-up" },
        "catch up missed fires (the misfire policy decides)"))
      : null,
    h("button", { type: "button", "data-edit": true, disabled: !live, onclick: () => act.edit() },
      "Edit…"),
    cancel);
}

function drawSchedule(box, job) {
  const p = (v, unit = "") => (v === null || v === undefined ? "—" : `${v}${unit}`);
  replace(box, h("h2", { id: "h-schedule" }, "Schedule and policies"), facts([
    ["Schedule", job.cron_schedule ? h("code", {}, job.cron_schedule) : "one-shot"],
    job.cron_schedule ? ["In words", h("span", { id: "schedule-words" }, "…")] : null,
    ["Time zone", job.timezone || "UTC"],
    ["Next fire", timeEl(job.next_fire_at)],
    job.paused_fire_at ? ["Held while paused", timeEl(job.paused_fire_at)] : null,
    ["Fires so far", String(job.fire_count ?? 0)],
    ["Overlap", p(job.overlap)],
    ["Misfire", p(job.misfire)],
    ["Catch-up window", p(job.catch_up_window_seconds, " s")],
    ["Start deadline", p(job.start_deadline_seconds, " s")],
    ["Jitter", p(job.jitter_seconds, " s")],
    ["Starts at", timeEl(job.start_at)],
    ["Ends at", timeEl(job.end_at)],
    ["Max fires", p(job.max_fires)],
    ["Max retries", p(job.max_retries)],
    ["Timeout", p(job.timeout_seconds, " s")],
    ["Queue", p(job.queue)],
    ["Priority", p(job.priority)],
  ]));
  if (job.cron_schedule) {
    preview(job.cron_schedule, job.timezone).then((answer) => {
      const words = document.getElementById("schedule-words");
      if (words) words.textContent = answer.description;
    }, () => {});
  }
}

async function drawFires(box, job, signal) {
  if (!job.cron_schedule) {
    box.hidden = true;
    return;
  }
  replace(box, h("h2", { id: "h-fires" }, "Next 10 fires"), h("p", { class: "muted" }, "…"));
  try {
    const answer = await preview(job.cron_schedule, job.timezone, 10);
    if (signal.aborted) return;
    replace(box, h("h2", { id: "h-fires" }, "Next 10 fires"),
      h("p", { class: "hint" }, "From the schedule alone (start/end, jitter and pauses apply on top)."),
      h("ol", { class: "fires" }, answer.fires.map((f) => h("li", {},
        h("time", { datetime: f.at }, wallTime(f.local)),
        f.dst ? h("span", { class: "badge dst", title: dstWhy(f.dst) }, `DST ${f.dst.replace("_", " ")}`) : null))));
  } catch (exc) {
    replace(box, h("h2", { id: "h-fires" }, "Next 10 fires"), alertBox(exc.message));
  }
}

function dstWhy(mark) {
  return {
    gap: "this wall time does not exist that day: the fire is at the transition",
    repeated: "this wall time occurs twice that day: the fire is at the first",
    offset_change: "the UTC offset changed since the previous fire",
  }[mark] || mark;
}

// The fire ledger, when the server has it (an older server answers 404: hidden).
async function drawLedger(box, path) {
  let answer;
  try {
    answer = await get(`${path}/fires`, { limit: 100 });
  } catch (exc) {
    if (exc instanceof ApiError && (exc.status === 404 || exc.status === 405)) {
      box.hidden = true;
      return;
    }
    replace(box, h("h2", { id: "h-ledger" }, "Fire ledger"), alertBox(exc.message));
    box.hidden = false;
    return;
  }
  box.hidden = false;
  const items = [...answer.items].reverse();
  replace(box, h("h2", { id: "h-ledger" }, "Fire ledger (last 24 h)"),
    items.length
      ? h("table", { class: "stack ledger" },
        h("thead", {}, h("tr", {}, ["Scheduled for", "Outcome", "Reason", "Fires", "Attempts",
          "Manual"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, items.map((f) => h("tr", {},
          h("td", { "data-label": "Scheduled for" }, timeEl(f.scheduled_for),
            f.last_scheduled_for && f.last_scheduled_for !== f.scheduled_for
              ? h("span", { class: "muted" }, " … ", timeEl(f.last_scheduled_for)) : null),
          h("td", { "data-label": "Outcome" }, badge(f.outcome)),
          h("td", { "data-label": "Reason" }, f.reason || "—"),
          h("td", { "data-label": "Fires" }, f.count === null ? "many" : String(f.count)),
          h("td", { "data-label": "Attempts" }, String(f.attempts ?? "—")),
          h("td", { "data-label": "Manual" }, f.manual ? "yes" : "no")))))
      : h("p", { class: "empty" }, "No fire in the last 24 hours."));
}
