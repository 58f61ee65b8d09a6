// The dashboard's router: one page per location hash, a fresh AbortSignal per page
// (its polls stop when the user leaves it), and the sign-in gate.
import { onUnauthenticated, whoami } from "./api.js";
import { alertBox, h, replace } from "./dom.js";
import * as session from "./session.js";
import * as job from "./views/job.js";
import * as jobs from "./views/jobs.js";
import * as login from "./views/login.js";
import * as overview from "./views/overview.js";
import * as run from "./views/run.js";
import * as submit from "./views/submit.js";

const ROUTES = [
  [/^\/login$/, login, "login"],
  [/^\/(?:jobs)?$/, jobs, "jobs"],
  [/^\/submit$/, submit, "submit"],
  [/^\/overview$/, overview, "overview"],
  [/^\/jobs\/([^/]+)$/, job, "jobs"],
  [/^\/jobs\/([^/]+)\/runs\/([^/]+)$/, run, "jobs"],
];

let controller = null;

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, search] = raw.split("?", 2);
  return { path, query: new URLSearchParams(search || "") };
}

async function route() {
  controller?.abort();
  controller = new AbortController();
  const { signal } = controller;
  const main = document.getElementById("main");
  const { path, query } = parse();
  await session.serverConfig();
  showWho();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) {
    replace(main, h("h1", {}, "Not found"), alertBox(`No page at ${path}.`));
    return;
  }
  const [pattern, view, nav] = found;
  if (view !== login && !session.current()) {
    go(`/login?next=${encodeURIComponent(path + (query.size ? `?${query}` : ""))}`);
    return;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const params = path.match(pattern).slice(1).map(decodeURIComponent);
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    await view.render(main, { params, query, signal, go });
  } catch (exc) {
    if (signal.aborted) return;
    replace(main, h("h1", { tabindex: "-1", id: "page-title" }, "Something went wrong"),
      alertBox(exc.message || String(exc)));
  }
  if (signal.aborted) return;
  document.title = `${document.querySelector("h1")?.textContent || "Dashboard"} · Chronoq`;
  if (focusNext) document.getElementById("page-title")?.focus({ preventScroll: true });
  focusNext = true;
}

let focusNext = false; // not on the first load: the skip link comes first then

function showWho() {
  const who = document.getElementById("who");
  const signedIn = session.current();
  who.hidden = !signedIn;
  const name = document.getElementById("who-name");
  name.textContent = signedIn ? `Signed in as ${session.label()}` : "";
  // A token says nothing readable about its user: the API names them (token mode only).
  if (signedIn?.token) {
    whoami().then((me) => {
      if (session.current()?.token === signedIn.token) name.textContent = `Signed in as ${me.user_id}`;
    }, () => {});
  }
}

onUnauthenticated.handler = (problem) => {
  session.signOut();
  const { path } = parse();
  if (path !== "/login") go(`/login?expired=${encodeURIComponent(problem.message)}`);
};

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  go("/login");
});
document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", route);
route();
