// The admin API as the console calls it: the admin key from sessionStorage as a Bearer token, JSON both ways,
// and an SSE reader on fetch (EventSource cannot send an Authorization header).

const KEY = "sluice.adminKey";
const BASE = new URL("../", document.baseURI);  // the console lives at <gateway>/ui/

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const adminKey = () => sessionStorage.getItem(KEY);
export const saveAdminKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetAdminKey = () => sessionStorage.removeItem(KEY);

/** `path` (no leading slash) with the non-empty `params` as its query. */
export function url(path, params = {}) {
  const target = new URL(path, BASE);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

function headers(extra = {}) {
  return {Authorization: `Bearer ${adminKey() || ""}`, ...extra};
}

async function failure(reply) {
  let detail = "";
  try {
    const body = await reply.json();
    detail = body?.error?.message || body?.detail || "";
    return new ApiError(reply.status, detail || `${reply.status} ${reply.statusText}`, body?.error?.code);
  } catch {
    return new ApiError(reply.status, `${reply.status} ${reply.statusText}`);
  }
}

/** One admin call; resolves to the parsed JSON body, rejects with an ApiError for a status >= 400. */
export async function api(path, {method = "GET", params, body, signal} = {}) {
  const init = {method, headers: headers(), cache: "no-store", signal};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const reply = await fetch(url(path, params), init);
  if (!reply.ok) throw await failure(reply);
  const text = await reply.text();
  return text ? JSON.parse(text) : null;
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") event = value;
    else if (name === "data") data.push(value);
  }
  return data.length ? {event, data: data.join("\n")} : null;
}

/** The server-sent events of `path`, as {event, data}; `onOpen` runs once the stream's headers arrived. */
export async function* events(path, params, signal, onOpen) {
  const reply = await fetch(url(path, params), {headers: headers({Accept: "text/event-stream"}), cache: "no-store",
                                                signal});
  if (!reply.ok) throw await failure(reply);
  if (onOpen) onOpen();
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      buffer = (buffer + value).replace(/\r\n|\r(?!$)/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (parsed) yield parsed;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}
