// The API client: bearer token, JSON in and out, RFC 9457 problems as ApiError.
import { auth } from "./auth.js";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title || problem.message)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.code || (status === 404 ? "not_found" : "error");
  }
  /** The route does not exist on this server (a feature not deployed yet), as opposed to a 404 of the route itself. */
  get routeMissing() {
    if (this.status === 405) return true;
    if (this.status !== 404) return false;
    // The local stack answers "no such route"; API Gateway answers {"message": "Not Found"}.
    return this.problem.detail === "no such route" || (!this.problem.code && this.problem.message === "Not Found");
  }
}

let base = "";
export function setApiBase(url) {
  base = (url || "").replace(/\/$/, "");
}

/** A fresh Idempotency-Key: one per intended operation, reused when that operation is retried. */
export function newKey(prefix = "console") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export async function request(method, path, { query, body, key, accept, ifMatch } = {}) {
  const url = new URL(base + path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  const headers = { accept: accept || "application/json" };
  const token = auth.token();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  if (key) headers["idempotency-key"] = key;
  if (ifMatch !== undefined) headers["if-match"] = `"${ifMatch}"`;
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, { title: "Network error", detail: `The API did not answer (${error.message}).` });
  }
  const type = response.headers.get("content-type") || "";
  const payload = type.includes("json") ? await response.json().catch(() => null) : await response.text();
  if (response.status === 401) auth.expired();
  if (!response.ok) throw new ApiError(response.status, typeof payload === "object" ? payload : { detail: payload });
  return { status: response.status, body: payload, headers: response.headers };
}

export const get = (path, options) => request("GET", path, options).then((r) => r.body);
export const post = (path, body, options = {}) => request("POST", path, { ...options, body }).then((r) => r.body);

/** Every page of a cursor-paged list, up to `max` items. */
export async function collect(path, query, max) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { query: { ...query, cursor, limit: 100 } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items.slice(0, max);
}
