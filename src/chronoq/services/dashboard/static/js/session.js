// Who the dashboard acts as: kept in sessionStorage (gone when the tab closes), sent
// with every API call as the server's auth mode asks (config.json says which).
const KEY = "chronoq.session";
let config = null;

export async function serverConfig() {
  if (config === null) {
    const r = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    config = r.ok ? await r.json() : { auth: "header" };
  }
  return config;
}

export function current() {
  try {
    const value = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return value && (value.token || value.user) ? value : null;
  } catch {
    return null;
  }
}

export function signIn(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  const s = current();
  if (!s) return {};
  if (s.token) return { Authorization: `Bearer ${s.token}` };
  return { "X-User-ID": s.user };
}

export function label() {
  const s = current();
  if (!s) return "";
  return s.token ? `token …${s.token.slice(-4)}` : s.user;
}
