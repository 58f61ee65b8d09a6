// One run: status, timings, worker, exit code and its output. Read again every second
// while the run is QUEUED or RUNNING; meanwhile its output grows live from
// GET /v1/runs/{run_id}/output/stream (server-sent events, ../events.js), the newest
// SHOW_CHARS shown. Once it has ended, the whole output comes from
// GET /v1/jobs/{id}/runs/{run_id}/output (streamed by the API), shown up to SHOW_CHARS
// and offered as a download.
import { call, get, jobPath } from "../api.js";
import { alertBox, badge, duration, every, facts, h, heading, replace, shortId, timeEl } from "../dom.js";
import { follow } from "../events.js";

const LIVE = new Set(["QUEUED", "RUNNING"]);
const SHOW_CHARS = 200_000;
const LOOKUP_LIMITS = [20, 1000]; // a live run is among the newest

// The first `chars` characters of a streamed answer (the rest is not read), and whether
// there was more: an output of any size costs the page at most this much.
async function head(response, chars) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return [text + decoder.decode(), false];
    text += decoder.decode(value, { stream: true });
    if (text.length > chars) {
      reader.cancel().catch(() => {});
      return [text.slice(0, chars), true];
    }
  }
}

async function findRun(jobId, runId) {
  for (const limit of LOOKUP_LIMITS) {
    const runs = await get(`${jobPath(jobId)}/runs`, { limit });
    const run = runs.items.find((r) => r.run_id === runId);
    if (run || runs.items.length < limit) return run || null;
  }
  return null;
}

export async function render(main, { params, signal }) {
  const [jobId, runId] = params;
  const outputPath = `${jobPath(jobId)}/runs/${encodeURIComponent(runId)}/output`;
  let run = await findRun(jobId, runId);
  if (signal.aborted) return;
  if (!run) {
    replace(main, heading(`Run ${shortId(runId)}`),
      alertBox("No such run among this job's latest 1,000 runs."),
      h("a", { href: `#/jobs/${encodeURIComponent(jobId)}` }, "Back to the job"));
    return;
  }
  const about = h("div", {});
  const announce = h("p", { class: "visually-hidden", "aria-live": "polite" });
  let announced = run.status;
  const output = h("pre", { class: "output", tabindex: "0", "aria-label": "Run output" });
  const outputNote = h("p", { class: "hint" });
  const saved = h("div", { "aria-live": "polite" });
  const download = h("button", { type: "button" }, "Download the whole output");
  download.addEventListener("click", async () => {
    replace(saved, h("p", { class: "muted" }, "Downloading…"));
    try {
      const blob = await (await call("GET", outputPath, { raw: true })).blob();
      const href = URL.createObjectURL(blob);
      const a = h("a", { href, download: `chronoq-${jobId}-${runId}.txt`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10_000);
      replace(saved, alertBox(`Saved ${blob.size} bytes.`, "ok"));
    } catch (exc) {
      replace(saved, alertBox(`Download failed: ${exc.message}`));
    }
  });
  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: `#/jobs/${encodeURIComponent(jobId)}` },
      `← Job ${shortId(jobId)}`)),
    heading(`Run ${shortId(runId)}`),
    announce,
    about,
    h("section", { "aria-labelledby": "h-output" },
      h("h2", { id: "h-output" }, "Output"), outputNote, output, download, saved));

  // The live output: opened once while the run is QUEUED or RUNNING, closed by its end.
  let live = null;
  const showLive = () => {
    if (output.textContent !== live.text) { // follow the end unless the reader scrolled up
      const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
      output.textContent = live.text;
      if (atBottom) output.scrollTop = output.scrollHeight;
    }
    outputNote.textContent = !live.text ? (run.status === "QUEUED" ? "Queued." : "Running: no output yet.")
      : live.cut ? `Running: the newest ${live.text.length.toLocaleString()} characters (live).`
        : `Running: ${live.text.length.toLocaleString()} characters so far (live).`;
  };
  const startLive = () => {
    live = { text: "", cut: false, offset: 0 };
    output.setAttribute("aria-busy", "true");
    follow(`/v1/runs/${encodeURIComponent(runId)}/output/stream`, {
      signal,
      onEvent: async (type, data) => {
        if (type === "output" && LIVE.has(run.status)) {
          live.cut ||= data.start > live.offset; // the server no longer kept the bytes between
          live.text += data.text;
          live.offset = data.start + new TextEncoder().encode(data.text).length;
          if (live.text.length > SHOW_CHARS) {
            live.text = live.text.slice(-SHOW_CHARS);
            live.cut = true;
          }
          showLive();
        } else if (type === "end") {
          output.removeAttribute("aria-busy");
          run = (await findRun(jobId, runId)) || { ...run, status: data.status };
          if (!signal.aborted) await draw();
        }
      },
      onError: (exc) => { outputNote.textContent = `Live output unavailable: ${exc.message}`; },
    });
  };

  const draw = async () => {
    if (run.status !== announced) announce.textContent = `The run is now ${(announced = run.status)}.`;
    replace(about, facts([
      ["Status", badge(run.status)],
      ["Run id", h("code", {}, run.run_id)],
      ["Attempt", `${run.attempt}${run.interruptions ? ` (after ${run.interruptions} interruptions)` : ""}`],
      ["Manual", run.manual ? "yes (triggered by hand)" : "no"],
      ["Scheduled for", timeEl(run.scheduled_for)],
      ["Triggered", timeEl(run.triggered_at)],
      ["Started", timeEl(run.started_at)],
      ["Completed", timeEl(run.completed_at)],
      ["Duration", duration(run.started_at, run.completed_at)],
      ["Worker", run.worker_id || "—"],
      ["Exit code", run.exit_code === null ? "—" : String(run.exit_code)],
      run.error_message ? ["Error", h("span", { class: "wrap" }, run.error_message)] : null,
    ]));
    if (LIVE.has(run.status)) {
      if (!live) startLive();
      showLive();
      return;
    }
    output.removeAttribute("aria-busy");
    let text = run.output || "";
    let more = false;
    if (run.output_truncated) {
      [text, more] = await head(await call("GET", outputPath, { raw: true }), SHOW_CHARS);
    }
    if (signal.aborted) return;
    output.textContent = text;
    outputNote.textContent = more
      ? `Showing the first ${text.length.toLocaleString()} characters: download the output for the rest.`
      : text ? `${text.length.toLocaleString()} characters.` : "No output.";
  };
  await draw();
  if (LIVE.has(run.status)) {
    every(1000, signal, async () => {
      run = (await findRun(jobId, runId)) || run;
      await draw();
      return LIVE.has(run.status);
    });
  }
}
