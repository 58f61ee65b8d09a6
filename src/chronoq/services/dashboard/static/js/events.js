// Server-sent events read with fetch. An EventSource cannot send the session's
// credentials (X-User-ID or Authorization are headers; the dashboard keeps no cookie),
// so the stream is fetched with them (api.js) and split as the SSE format says:
// blank-line separated events of "event:", "id:" and "data:" lines, ":" comments.
// Like an EventSource it reconnects with Last-Event-ID when the server closes a stream
// without the final event, or the connection drops; it stops on `end`, on an API error
// (4xx: the error is passed to onError) or when `signal` aborts.
import { ApiError, call } from "./api.js";

const RETRY_MS = 1000;
const MAX_FAILURES = 5;

export function follow(path, { signal, onEvent, onError }) {
  let lastId = "";
  const once = async () => {
    const headers = { Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const response = await call("GET", path, { raw: true, headers, signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = { type: "message", id: null, data: [] };
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return false;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (event.data.length) {
            if (event.id !== null) lastId = event.id;
            const data = JSON.parse(event.data.join("\n"));
            onEvent(event.type, data, event.id);
            if (event.type === "end") {
              reader.cancel().catch(() => {});
              return true;
            }
          }
          event = { type: "message", id: null, data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "event") event.type = value;
          else if (name === "id") event.id = value;
          else if (name === "data") event.data.push(value);
        }
      }
    }
  };
  (async () => {
    let failures = 0;
    while (!signal.aborted && failures < MAX_FAILURES) {
      try {
        if (await once()) return;
        failures = 0;
      } catch (exc) {
        if (signal.aborted) return;
        if (exc instanceof ApiError && exc.status >= 400 && exc.status < 500 && exc.status !== 429) {
          if (onError) onError(exc);
          return;
        }
        failures += 1;
      }
      await new Promise((done) => setTimeout(done, RETRY_MS));
    }
  })();
}
