// The live request log: newest first, fed by GET /admin/logs/stream (SSE read with fetch), or by polling
// GET /admin/logs when the gateway has no stream; filters in the hash (#/log?model=…); one entry's detail.

import {ApiError, api, events, sleep} from "./api.js";
import {badge, field, h, message, number, pretty, usd, when} from "./dom.js";

const FILTERS = [["key_id", "Key id"], ["model", "Model"], ["provider", "Provider"], ["project", "Project"],
                 ["service", "Service"], ["status", "Status"], ["since", "From (local time)"],
                 ["until", "To (local time)"], ["q", "Free text"]];
const TIMES = new Set(["since", "until"]);
const SHOWN = 200;
const POLL_MS = 1000;

export function render(page, {params, signal, unauthorized}) {
  const filters = Object.fromEntries(FILTERS.map(([name]) => [name, params.get(name) || ""]));
  const shown = new Map();  // log id -> its row
  const state = h("p", {class: "live", role: "status", id: "live-state"}, "Connecting…");
  const body = h("tbody", {id: "log-rows"});
  const detail = h("section", {class: "card detail", id: "log-detail", "aria-labelledby": "detail-title",
                               hidden: true});
  const open = (id) => openDetail(detail, id, unauthorized);

  // A new row goes in before the first older one; rows already shown never move, so a focused button keeps focus.
  const add = (entry) => {
    if (!entry || !entry.log_id || shown.has(entry.log_id) || !matches(entry, filters)) return;
    const at = entry.timestamp_utc || "";
    const added = row(entry, open);
    body.insertBefore(added, [...body.children].find((other) => other.dataset.at < at) || null);
    shown.set(entry.log_id, added);
    while (body.children.length > SHOWN) {
      shown.delete(body.lastElementChild.dataset.logId);
      body.lastElementChild.remove();
    }
  };

  page.append(
    h("h1", {}, "Request log"),
    filterForm(filters),
    state,
    h("div", {class: "table-wrap"},
      h("table", {id: "log-table"},
        h("caption", {}, "Requests, newest first (updates by itself)"),
        h("thead", {}, h("tr", {}, ["Time", "Status", "Model", "Provider", "Key", "Project", "Latency ms", "Tokens",
                                   "Cost", ""].map((name) => h("th", {scope: "col"}, name)))),
        body)),
    detail);
  follow(filters, signal, add, (text) => { state.textContent = text; }, unauthorized);
}

function filterForm(filters) {
  const kind = (name) => (name === "status" ? "number" : TIMES.has(name) ? "datetime-local" : "text");
  const inputs = FILTERS.map(([name, label]) =>
    field(label, h("input", {name, value: TIMES.has(name) ? localTime(filters[name]) : filters[name],
                             type: kind(name), id: `filter-${name}`,
                             inputmode: name === "status" ? "numeric" : null})));
  const form = h("form", {class: "filters", id: "log-filters", role: "search", "aria-label": "Filter the log"},
    ...inputs,
    h("div", {class: "actions"},
      h("button", {type: "submit"}, "Apply filters"),
      h("button", {type: "button", class: "secondary", onclick: () => { location.hash = "#/log"; }}, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name, value] of new FormData(form)) {
      const given = String(value).trim();
      // A time range goes to the gateway as UTC ISO 8601; the inputs show it in the browser's time zone.
      if (given) query.set(name, TIMES.has(name) ? new Date(given).toISOString() : given);
    }
    const hash = `#/log${query.size ? "?" + query : ""}`;
    if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
    else location.hash = hash;
  });
  return form;
}

/** An ISO 8601 instant as a datetime-local input's value (the browser's time zone), "" for none. */
function localTime(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:` +
    `${pad(at.getMinutes())}`;
}

/** The server's exact filters, checked here too (a gateway that ignores one still shows only what was asked for);
 * the free text is the server's alone: it searches request bodies, which listed entries do not carry. */
function matches(entry, filters) {
  const checks = {
    key_id: entry.api_key_id, model: entry.provider?.model_requested, provider: entry.provider?.name,
    project: entry.metadata?.project, status: entry.response?.status_code,
  };
  for (const [name, value] of Object.entries(checks)) {
    if (filters[name] && String(value ?? "") !== filters[name]) return false;
  }
  const at = Date.parse(entry.timestamp_utc || "");
  if (filters.since && at < Date.parse(filters.since)) return false;
  if (filters.until && at >= Date.parse(filters.until)) return false;
  return true;
}

async function follow(filters, signal, add, say, unauthorized) {
  while (!signal.aborted) {
    try {
      say("Connecting to the live stream…");
      for await (const event of events("admin/logs/stream", {...filters, backlog: 50}, signal,
                                       () => say("Live: following new requests as they finish."))) {
        if (event.event === "entry") add(JSON.parse(event.data));
      }
      if (!signal.aborted) say("The stream ended; reconnecting…");
    } catch (error) {
      if (signal.aborted || unauthorized(error)) return;
      if (error instanceof ApiError && error.status === 404) {
        await poll(filters, signal, add, say, unauthorized);  // a gateway without /admin/logs/stream
        return;
      }
      say(`Disconnected (${error.message}); retrying in 2 s…`);
    }
    await sleep(2000, signal);
  }
}

async function poll(filters, signal, add, say, unauthorized) {
  while (!signal.aborted) {
    try {
      const page = await api("admin/logs", {params: {...filters, limit: 50}, signal});
      for (const entry of page.data) add(entry);
      say("Live: checking for new requests every second.");
    } catch (error) {
      if (signal.aborted || unauthorized(error)) return;
      say(`Could not read the log (${error.message}); retrying…`);
    }
    await sleep(POLL_MS, signal);
  }
}

function row(entry, open) {
  const status = entry.response?.status_code;
  const usage = entry.usage || {};
  return h("tr", {"data-log-id": entry.log_id, "data-at": entry.timestamp_utc || "",
                  "data-model": entry.provider?.model_requested || ""},
    h("td", {}, h("time", {datetime: entry.timestamp_utc}, when(entry.timestamp_utc))),
    h("td", {}, badge(String(status ?? "–"), status && status < 400 && !entry.error)),
    h("td", {}, entry.provider?.model_requested || "–"),
    h("td", {}, entry.provider?.name || "–"),
    h("td", {}, entry.api_key_id || "–"),
    h("td", {}, entry.metadata?.project || "–"),
    h("td", {class: "num"}, number(entry.timing?.total_latency_ms, 1)),
    h("td", {class: "num"}, number(usage.total_tokens)),
    h("td", {class: "num"}, usd(entry.cost_usd)),
    h("td", {}, h("button", {type: "button", class: "small", "aria-label": `Details of request ${entry.request_id}`,
                             onclick: () => open(entry.log_id)}, "Details")));
}

async function openDetail(panel, id, unauthorized) {
  panel.hidden = false;
  panel.replaceChildren(message("Loading the entry…"));
  let entry;
  try {
    entry = await api(`admin/logs/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!unauthorized(error)) panel.replaceChildren(message(`Could not load the entry: ${error.message}`, "error"));
    return;
  }
  const timing = entry.timing || {};
  const overhead = timing.total_latency_ms != null && timing.provider_latency_ms != null
    ? timing.total_latency_ms - timing.provider_latency_ms : null;
  const hops = entry.routing?.hops;
  const title = h("h2", {id: "detail-title", tabindex: "-1"}, `Request ${entry.request_id}`);
  panel.replaceChildren(
    h("div", {class: "detail-head"}, title,
      h("button", {type: "button", class: "secondary", onclick: () => { panel.hidden = true; }}, "Close details")),
    facts([
      ["Time", when(entry.timestamp_utc)], ["Endpoint", `${entry.method} ${entry.endpoint}`],
      ["Status", String(entry.response?.status_code ?? "–")], ["Stream", entry.stream ? "yes" : "no"],
      ["Model requested", entry.provider?.model_requested], ["Model resolved", entry.provider?.model_resolved],
      ["Provider", entry.provider?.name], ["Key", entry.api_key_id], ["Project", entry.metadata?.project],
      ["Total latency", ms(timing.total_latency_ms)], ["Upstream latency", ms(timing.provider_latency_ms)],
      ["Gateway overhead", ms(overhead)], ["Time to first token", ms(timing.time_to_first_token_ms)],
      ["Prompt tokens", number(entry.usage?.prompt_tokens)],
      ["Completion tokens", number(entry.usage?.completion_tokens)],
      ["Total tokens", number(entry.usage?.total_tokens)], ["Cost", usd(entry.cost_usd)],
      ["Cache", entry.routing?.cache || "–"],
      ["Service route", entry.routing?.route ? JSON.stringify(entry.routing.route) : null],
      ["Trace", traceLink(entry.metadata?.trace_id, await phoenixUrl())],
      ["Error", entry.error ? JSON.stringify(entry.error) : null],
    ]),
    h("h3", {}, "Fallback hops"),
    Array.isArray(hops) && hops.length
      ? h("ol", {class: "hops"}, hops.map((hop) => h("li", {}, typeof hop === "string" ? hop : JSON.stringify(hop))))
      : h("p", {}, "None: the first deployment answered."),
    // Scrollable bodies take the keyboard focus, so they can be scrolled without a mouse.
    h("h3", {}, "Request"), h("pre", {class: "body", id: "detail-request", tabindex: "0", "aria-label": "Request"},
                              pretty(entry.request)),
    h("h3", {}, "Response"), h("pre", {class: "body", id: "detail-response", tabindex: "0",
                                       "aria-label": "Response"}, pretty(entry.response)));
  title.focus();
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${number(value, 1)} ms`;
}

function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value))));
}

let phoenix;

async function phoenixUrl() {
  // Asked once: where Phoenix is when the gateway sends it its traces (GET /admin/tracing), else null.
  if (phoenix === undefined) {
    try {
      phoenix = (await api("/admin/tracing")).phoenix_url || null;
    } catch {
      phoenix = null;
    }
  }
  return phoenix;
}

function traceLink(traceId, base) {
  if (!traceId) return "none (tracing off, or not sampled)";
  if (!base) return traceId;
  return h("a", {href: `${base}/redirects/traces/${encodeURIComponent(traceId)}`, target: "_blank",
                 rel: "noopener noreferrer", id: "detail-trace-link"}, `${traceId} (open in Phoenix)`);
}
