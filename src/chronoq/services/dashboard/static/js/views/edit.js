// Edit a job (PATCH /v1/jobs/{id}): its current values filled in; only the fields the
// user changed are sent, a cleared field as null (back to its default). The API's 400
// naming a field shows beside that field.
import { ApiError, call, jobPath } from "../api.js";
import { alertBox, field, h, replace } from "../dom.js";
import { clearError, showError, toInstant } from "./submit.js";

const NUMBERS = ["max_retries", "timeout_seconds", "catch_up_window_seconds",
  "start_deadline_seconds", "jitter_seconds", "max_fires", "priority"];
const INSTANTS = ["next_fire_at", "start_at", "end_at"];
const RECURRING = ["cron_schedule", "timezone", "overlap", "misfire", "catch_up_window_seconds",
  "jitter_seconds", "start_at", "end_at", "max_fires"];
const ONE_SHOT = ["next_fire_at"];
const COMMON = ["payload", "max_retries", "timeout_seconds", "start_deadline_seconds", "queue",
  "priority"];
const LABELS = {
  payload: "Payload", cron_schedule: "Schedule", timezone: "Time zone", overlap: "Overlap",
  misfire: "Misfire", max_retries: "Max retries", timeout_seconds: "Timeout (seconds)",
  catch_up_window_seconds: "Catch-up window (seconds)", jitter_seconds: "Jitter (seconds)",
  start_deadline_seconds: "Start deadline (seconds)", max_fires: "Max fires",
  next_fire_at: "Fire at (your local time)", start_at: "Start at (your local time)",
  end_at: "End at (your local time)", queue: "Queue", priority: "Priority",
};
const CHOICES = { overlap: ["skip", "allow", "buffer_one", "cancel_previous"],
  misfire: ["run_once", "run_all", "skip"] };

const pad = (n) => String(n).padStart(2, "0");

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function shown(job, name) {
  const value = job[name];
  if (value === null || value === undefined) return "";
  return INSTANTS.includes(name) ? localInput(value) : String(value);
}

function control(name, value) {
  if (name === "payload") return h("textarea", { name, rows: 3, text: value });
  if (CHOICES[name]) {
    return h("select", { name }, CHOICES[name].map((o) => h("option", { value: o, selected: o === value }, o)));
  }
  if (INSTANTS.includes(name)) return h("input", { name, type: "datetime-local", step: 1, value });
  if (NUMBERS.includes(name)) return h("input", { name, type: "number", step: "any", value });
  return h("input", { name, type: "text", value, autocomplete: "off", spellcheck: "false" });
}

// The form, or null for a job that can no longer change.
export function editForm(job, onSaved, onClose) {
  const names = [...COMMON, ...(job.cron_schedule ? RECURRING : ONE_SHOT)];
  const form = h("form", { class: "card submit edit", novalidate: true, "aria-label": "Edit job" },
    names.map((name) => field(`f-${name}`, LABELS[name], control(name, shown(job, name)))),
    h("div", { class: "form-error", "aria-live": "assertive" }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Save changes"),
      h("button", { type: "button", onclick: onClose }, "Close")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    names.forEach((name) => clearError(form, name));
    const formError = form.querySelector(".form-error");
    const patch = {};
    for (const name of names) {
      const raw = form.elements[name].value;
      const value = name === "payload" ? raw : raw.trim();
      if (value === shown(job, name)) continue;
      if (value === "") patch[name] = null;
      else if (NUMBERS.includes(name)) patch[name] = Number.isFinite(Number(value)) ? Number(value) : value;
      else if (INSTANTS.includes(name)) patch[name] = toInstant(value);
      else patch[name] = value;
    }
    if (!Object.keys(patch).length) {
      replace(formError, alertBox("Nothing changed.", "ok"));
      return;
    }
    try {
      onSaved(await call("PATCH", jobPath(job.job_id), { body: patch }));
    } catch (exc) {
      const name = exc instanceof ApiError ? exc.field : null;
      if (name && names.includes(name)) showError(form, name, exc.message, true);
      else replace(formError, alertBox(exc.message));
    }
  });
  return form;
}
