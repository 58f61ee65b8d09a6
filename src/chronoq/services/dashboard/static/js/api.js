// Chronoq's JSON API, called with the session's credentials. Every failure is an
// ApiError carrying the API's own {code, message, field}.
import { authHeaders } from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export const onUnauthenticated = { handler: null };

export async function call(method, path, { query, body, raw, headers: extra, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json", ...extra, ...authHeaders() };
  const init = { method, headers, cache: "no-store", credentials: "omit", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    throw new ApiError(0, "network", `the server did not answer (${exc.message})`, null);
  }
  if (!response.ok) {
    let error = null;
    try {
      error = (await response.json()).error;
    } catch {
      error = null;
    }
    const problem = new ApiError(
      response.status,
      error?.code || `http_${response.status}`,
      error?.message || `${response.status} ${response.statusText}`,
      error?.field ?? null,
    );
    if (response.status === 401 && onUnauthenticated.handler) onUnauthenticated.handler(problem);
    throw problem;
  }
  return raw ? response : response.json();
}

export const get = (path, query) => call("GET", path, { query });
export const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

const previews = new Map();

// The schedule in words and its next fires (cached per schedule for a minute).
export function preview(cron, timezone, count = 1) {
  const key = JSON.stringify([cron, timezone || "", count]);
  const hit = previews.get(key);
  if (hit && Date.now() - hit.at < 60_000) return hit.promise;
  const promise = get("/v1/schedules/preview", { cron_schedule: cron, timezone, count });
  promise.catch(() => previews.delete(key));
  previews.set(key, { at: Date.now(), promise });
  return promise;
}

let me = { key: null, promise: null };

// Who the session's credentials are (GET /v1/whoami), asked once per credentials.
export function whoami() {
  const key = JSON.stringify(authHeaders());
  if (me.key !== key) {
    const promise = get("/v1/whoami");
    promise.catch(() => { if (me.promise === promise) me = { key: null, promise: null }; });
    me = { key, promise };
  }
  return me.promise;
}
