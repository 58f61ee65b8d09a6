// Submit a job (POST /v1/jobs): every field of the job spec, a live preview of the
// schedule, and the API's own 400 messages shown beside the field they name.
import { ApiError, call, preview } from "../api.js";
import { alertBox, field, h, heading, replace, wallTime } from "../dom.js";

const PREVIEW_DELAY_MS = 300;
const NUMBERS = ["max_retries", "timeout_seconds", "catch_up_window_seconds",
  "start_deadline_seconds", "jitter_seconds", "max_fires", "priority"];
const INSTANTS = ["next_fire_at", "start_at", "end_at"];
const RECURRING = ["cron_schedule", "timezone", "overlap", "misfire", "catch_up_window_seconds",
  "end_at", "max_fires", "start_at", "jitter_seconds"];

const input = (name, attrs = {}) => h("input", { name, type: "text", autocomplete: "off", ...attrs });
const number = (name, attrs = {}) => input(name, { type: "number", inputmode: "decimal", ...attrs });
const choice = (name, options) => h("select", { name },
  h("option", { value: "" }, "default"), options.map((o) => h("option", { value: o }, o)));

function zones() {
  const list = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return h("datalist", { id: "zones" }, ["UTC", ...list].map((z) => h("option", { value: z })));
}

export async function render(main, { go }) {
  const kind = (value, text, checked) => h("label", { class: "inline" },
    h("input", { type: "radio", name: "kind", value, checked }), ` ${text}`);
  const form = h("form", { class: "card submit", novalidate: true },
    field("f-project_id", "Project", input("project_id", { required: true, maxlength: 200 })),
    field("f-payload", "Payload", h("textarea", { name: "payload", rows: 3, required: true }),
      "cmd:<shell command>, sleep:<duration> (10s, 1m), or any text (echoed)."),
    h("fieldset", { class: "kind" }, h("legend", {}, "When"),
      kind("now", "Now, once", true), kind("at", "Once, at a time", false),
      kind("recurring", "On a schedule", false)),
    h("div", { "data-when": "at" },
      field("f-next_fire_at", "Fire at (your local time)", input("next_fire_at",
        { type: "datetime-local", step: 1 }))),
    h("div", { "data-when": "recurring" },
      field("f-cron_schedule", "Schedule", input("cron_schedule", { spellcheck: "false" }),
        "5-field cron, 6 fields with seconds first, @every 30s, @hourly…"),
      field("f-timezone", "Time zone", input("timezone", { list: "zones",
        value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" })),
      zones(),
      h("section", { class: "preview", "aria-live": "polite", "aria-label": "Schedule preview" })),
    field("f-max_retries", "Max retries", number("max_retries", { min: 0, step: 1, inputmode: "numeric" })),
    field("f-timeout_seconds", "Timeout (seconds)", number("timeout_seconds", { min: 0.001, step: "any" })),
    field("f-queue", "Queue", input("queue", { maxlength: 64, spellcheck: "false", placeholder: "default" }),
      "Only workers serving this queue run it (docs/queues.md)."),
    field("f-priority", "Priority", number("priority", { min: -1000, max: 1000, step: 1, inputmode: "numeric" }),
      "-1000 to 1000; among runs ready to start, higher goes first (default 0)."),
    h("details", {}, h("summary", {}, "Schedule policies and idempotency"),
      h("div", { "data-when": "recurring" },
        field("f-overlap", "Overlap", choice("overlap", ["skip", "allow", "buffer_one", "cancel_previous"]),
          "A fire while the previous run still runs (default skip)."),
        field("f-misfire", "Misfire", choice("misfire", ["run_once", "run_all", "skip"]),
          "Fires missed while nothing could run them (default run_once)."),
        field("f-catch_up_window_seconds", "Catch-up window (seconds, run_all only)",
          number("catch_up_window_seconds", { min: 0, step: "any" })),
        field("f-jitter_seconds", "Jitter (seconds)", number("jitter_seconds", { min: 0, step: "any" })),
        field("f-start_at", "Start at (your local time)", input("start_at", { type: "datetime-local", step: 1 })),
        field("f-end_at", "End at (your local time)", input("end_at", { type: "datetime-local", step: 1 })),
        field("f-max_fires", "Max fires", number("max_fires", { min: 1, step: 1, inputmode: "numeric" }))),
      field("f-start_deadline_seconds", "Start deadline (seconds)",
        number("start_deadline_seconds", { min: 0, step: "any" })),
      field("f-idempotency_key", "Idempotency key", input("idempotency_key", { maxlength: 255 }),
        "A retry with the same key returns the first job instead of making another.")),
    h("div", { class: "form-error", "aria-live": "assertive" }),
    h("button", { type: "submit", class: "primary" }, "Submit job"));
  replace(main, heading("Submit a job"), form);

  const when = () => form.elements.kind.value;
  const showWhen = () => {
    for (const part of form.querySelectorAll("[data-when]")) part.hidden = part.dataset.when !== when();
  };
  form.addEventListener("change", (event) => {
    if (event.target.name === "kind") {
      showWhen();
      schedulePreview();
    }
  });
  showWhen();

  let timer = null;
  let asked = 0;
  const schedulePreview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const box = form.querySelector(".preview");
      const cron = form.elements.cron_schedule.value.trim();
      clearError(form, "cron_schedule");
      clearError(form, "timezone");
      if (when() !== "recurring" || !cron) return replace(box);
      const mine = ++asked;
      try {
        const answer = await preview(cron, form.elements.timezone.value.trim(), 5);
        if (mine !== asked) return;
        replace(box, h("p", {}, h("strong", {}, answer.description)),
          h("ol", { class: "fires" }, answer.fires.map((f) => h("li", {}, wallTime(f.local),
            f.dst ? h("span", { class: "badge dst" }, `DST ${f.dst.replace("_", " ")}`) : null))));
      } catch (exc) {
        if (mine !== asked) return;
        replace(box);
        showError(form, exc.field === "timezone" ? "timezone" : "cron_schedule", exc.message);
      }
    }, PREVIEW_DELAY_MS);
  };
  form.elements.cron_schedule.addEventListener("input", schedulePreview);
  form.elements.timezone.addEventListener("input", schedulePreview);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const name of ["project_id", "payload", ...NUMBERS, ...INSTANTS, "cron_schedule",
      "timezone", "overlap", "misfire", "idempotency_key", "queue"]) clearError(form, name);
    const formError = form.querySelector(".form-error");
    replace(formError);
    if (when() === "at" && !form.elements.next_fire_at.value) {
      // Blank would submit a job that runs now: not what "at a time" means.
      showError(form, "next_fire_at", "Pick the time to fire at.", true);
      return;
    }
    if (when() === "recurring" && !form.elements.cron_schedule.value.trim()) {
      showError(form, "cron_schedule", "Enter a schedule.", true);
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await call("POST", "/v1/jobs", { body: spec(form, when()) });
      go(`/jobs/${encodeURIComponent(job.job_id)}`);
    } catch (exc) {
      const name = exc instanceof ApiError && exc.field ? exc.field : null;
      if (name && form.querySelector(`[data-field="f-${name}"]`)) {
        showError(form, name, exc.message, true);
      } else {
        replace(formError, alertBox(exc.message));
      }
    } finally {
      button.disabled = false;
    }
  });
}

// The request body: only what the user filled in (blank fields keep the API's defaults).
export function spec(form, when) {
  const values = {};
  const text = (name) => form.elements[name].value.trim();
  values.project_id = form.elements.project_id.value;
  values.payload = form.elements.payload.value;
  const fields = ["max_retries", "timeout_seconds", "start_deadline_seconds", "idempotency_key",
    "queue", "priority"];
  if (when === "at") fields.push("next_fire_at");
  if (when === "recurring") fields.push(...RECURRING);
  for (const name of fields) {
    const value = text(name);
    if (value === "") continue;
    if (NUMBERS.includes(name)) values[name] = Number.isFinite(Number(value)) ? Number(value) : value;
    else if (INSTANTS.includes(name)) values[name] = toInstant(value);
    else values[name] = value;
  }
  return values;
}

export function toInstant(local) {
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? local : d.toISOString();
}

export function showError(form, name, message, focus = false) {
  const wrap = form.querySelector(`[data-field="f-${name}"]`);
  if (!wrap) return;
  const control = wrap.querySelector("input, select, textarea");
  const box = wrap.querySelector(".field-error");
  box.textContent = message;
  box.hidden = false;
  control.setAttribute("aria-invalid", "true");
  if (focus) {
    wrap.closest("details")?.setAttribute("open", "");
    for (const part of [wrap.closest("[data-when]")]) if (part) part.hidden = false;
    control.focus();
  }
}

export function clearError(form, name) {
  const wrap = form.querySelector(`[data-field="f-${name}"]`);
  if (!wrap) return;
  wrap.querySelector(".field-error").hidden = true;
  wrap.querySelector("input, select, textarea").removeAttribute("aria-invalid");
}
