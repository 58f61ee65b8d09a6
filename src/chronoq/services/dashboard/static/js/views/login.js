// Sign in: an API token (--auth token) or, in the header mode, a user id. Checked
// against the API at once, so a wrong token is said here, not on the next page.
import { ApiError, call } from "../api.js";
import { alertBox, field, h, heading, replace } from "../dom.js";
import * as session from "../session.js";

export async function render(main, { query, go }) {
  const { auth } = await session.serverConfig();
  const token = auth === "token";
  const input = token
    ? h("input", { type: "password", name: "token", autocomplete: "off", required: true,
      spellcheck: "false", placeholder: "cq_…" })
    : h("input", { type: "text", name: "user", autocomplete: "username", required: true,
      maxlength: 200 });
  const status = h("div", { "aria-live": "polite" });
  const expired = query.get("expired");
  const form = h("form", { class: "card narrow", novalidate: true },
    token
      ? field("login-token", "API token", input, "A token made with `chronoq token create`; " +
        "kept in this tab only (sessionStorage).")
      : field("login-user", "User id", input, "This server trusts the X-User-ID header " +
        "(loopback or behind a gateway): you see the jobs of this user."),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) {
      replace(status, alertBox(token ? "Enter an API token." : "Enter a user id."));
      input.focus();
      return;
    }
    session.signIn(token ? { token: value } : { user: value });
    try {
      await call("GET", "/v1/jobs", { query: { limit: 1 } });
    } catch (exc) {
      session.signOut();
      replace(status, alertBox(exc instanceof ApiError ? exc.message : String(exc)));
      input.focus();
      return;
    }
    go(query.get("next") || "/jobs");
  });
  replace(main, heading("Sign in"),
    expired ? alertBox(`Signed out: ${expired}`) : null,
    form);
}
