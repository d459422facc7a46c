// Usage over time: GET /admin/usage/series (per model, key, provider, project or service), drawn as an SVG line
// chart with axes, labels and a legend; GET /admin/usage (no latency) when the gateway has no series endpoint.

import {ApiError, api} from "./api.js";
import {field, h, message, number, s} from "./dom.js";

const METRICS = {
  requests: "Requests", errors: "Errors", prompt_tokens: "Prompt tokens", completion_tokens: "Completion tokens",
  total_tokens: "Total tokens", cost_usd: "Cost (USD)", latency_p50_ms: "Latency p50 (ms)",
  latency_p95_ms: "Latency p95 (ms)", latency_p99_ms: "Latency p99 (ms)",
};
const GROUPS = {model: "Model", key: "Key", provider: "Provider", project: "Project", service: "Service"};
const BUCKETS = {minute: "Minute", hour: "Hour", day: "Day"};
const SPANS = {"1": "Last hour", "24": "Last 24 hours", "168": "Last 7 days", "720": "Last 30 days"};
const COLOURS = ["#0a5fa8", "#b5400b", "#00795b", "#a3317a", "#7a5a00", "#3b3b9e", "#222222", "#8c2d2d"];
const LEGACY_GROUPS = {model: "model", key: "key_id", provider: "provider"};

function select(name, options, value) {
  return h("select", {name, id: `usage-${name}`},
    Object.entries(options).map(([key, label]) => h("option", {value: key, selected: key === value}, label)));
}

export function render(page, {params, unauthorized}) {
  const chosen = {group_by: params.get("group_by") || "model", bucket: params.get("bucket") || "hour",
                  metric: params.get("metric") || "requests", hours: params.get("hours") || "24"};
  const form = h("form", {class: "filters", id: "usage-form", "aria-label": "What to chart"},
    field("Group by", select("group_by", GROUPS, chosen.group_by)),
    field("Bucket", select("bucket", BUCKETS, chosen.bucket)),
    field("Metric", select("metric", METRICS, chosen.metric)),
    field("Period", select("hours", SPANS, chosen.hours)),
    h("div", {class: "actions"}, h("button", {type: "submit"}, "Show chart")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/usage?${new URLSearchParams(new FormData(form))}`;
  });
  const out = h("div", {id: "usage-chart"}, message("Loading usage…"));
  page.append(h("h1", {}, "Usage"), form, out);
  load(chosen).then((report) => out.replaceChildren(...view(report, chosen))).catch((error) => {
    if (!unauthorized(error)) out.replaceChildren(message(`Could not load usage: ${error.message}`, "error"));
  });
}

const BUCKET_MS = {minute: 60_000, hour: 3600_000, day: 86400_000};
const MAX_BUCKETS = 1990;  // the series endpoint answers at most 2,000 points per series

async function load({group_by, bucket, hours}) {
  const span = Math.min(Number(hours) * 3600_000, MAX_BUCKETS * (BUCKET_MS[bucket] || BUCKET_MS.hour));
  const since = new Date(Date.now() - span).toISOString();
  try {
    const report = await api("admin/usage/series", {params: {group_by, bucket, since}});
    return {...report, note: null};
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  return legacy(group_by, bucket, since);  // a gateway without /admin/usage/series
}

async function legacy(groupBy, bucket, since) {
  const column = LEGACY_GROUPS[groupBy];
  const used = bucket === "minute" ? "hour" : bucket;
  const report = await api("admin/usage", {params: {bucket: used, since}});
  const series = new Map();
  for (const row of report.data) {
    const group = column ? row[column] ?? "(none)" : "all";
    if (!series.has(group)) series.set(group, new Map());
    const points = series.get(group);
    const point = points.get(row.period_start) || {t: row.period_start, requests: 0, errors: 0, prompt_tokens: 0,
                                                     completion_tokens: 0, cost_usd: 0};
    for (const name of ["requests", "errors", "prompt_tokens", "completion_tokens", "cost_usd"]) {
      point[name] += row[name] || 0;
    }
    points.set(row.period_start, point);
  }
  return {bucket: used, note: "This gateway has no /admin/usage/series: hourly or daily totals from /admin/usage, "
                                + "without latency" + (column ? "." : `, not grouped by ${groupBy}.`),
          series: [...series].map(([group, points]) => ({group, points: [...points.values()]}))};
}

function valueOf(point, metric) {
  if (metric === "total_tokens") return (point.prompt_tokens || 0) + (point.completion_tokens || 0);
  const value = point[metric];
  return value === null || value === undefined ? null : Number(value);
}

function view(report, chosen) {
  const series = (report.series || []).map((one) => ({
    group: String(one.group ?? "(none)"),
    points: one.points.map((p) => ({t: new Date(p.t).getTime(), v: valueOf(p, chosen.metric)}))
      .filter((p) => p.v !== null && !Number.isNaN(p.t)).sort((a, b) => a.t - b.t),
  })).filter((one) => one.points.length);
  const parts = report.note ? [message(report.note)] : [];
  if (!series.length) return [...parts, message("No requests in this period.")];
  const label = `${METRICS[chosen.metric]} per ${report.bucket || chosen.bucket}, by ${GROUPS[chosen.group_by]}`;
  return [...parts, chart(series, label), legend(series), dataTable(series, label)];
}

function ticks(max, count = 5) {
  const raw = max / count;
  const step = 10 ** Math.floor(Math.log10(raw || 1));
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * step).find((m) => m >= raw) || step * 10;
  const top = Math.max(nice, Math.ceil(max / nice) * nice);
  return Array.from({length: Math.round(top / nice) + 1}, (_, i) => i * nice);
}

function timeLabel(ms, span) {
  const date = new Date(ms);
  if (span > 2 * 86400_000) return date.toLocaleDateString(undefined, {month: "short", day: "numeric"});
  return date.toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"});
}

function chart(series, label) {
  const [width, height, left, right, top, bottom] = [760, 320, 64, 36, 16, 48];
  const times = series.flatMap((one) => one.points.map((p) => p.t));
  let [t0, t1] = [Math.min(...times), Math.max(...times)];
  if (t0 === t1) { t0 -= 1800_000; t1 += 1800_000; }
  const yTicks = ticks(Math.max(...series.flatMap((one) => one.points.map((p) => p.v)), 0));
  const yMax = yTicks[yTicks.length - 1] || 1;
  const x = (t) => left + (t - t0) / (t1 - t0) * (width - left - right);
  const y = (v) => top + (1 - v / yMax) * (height - top - bottom);
  const xTicks = Array.from({length: 6}, (_, i) => t0 + i * (t1 - t0) / 5);
  return s("svg", {viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-labelledby": "chart-title"},
    s("title", {id: "chart-title"}, label),
    yTicks.map((v) => s("g", {class: "tick"},
      s("line", {x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid"}),
      s("text", {x: left - 6, y: y(v) + 4, "text-anchor": "end"}, number(v, 2)))),
    xTicks.map((t) => s("text", {x: x(t), y: height - bottom + 18, "text-anchor": "middle", class: "tick"},
                        timeLabel(t, t1 - t0))),
    s("line", {x1: left, x2: left, y1: top, y2: height - bottom, class: "axis"}),
    s("line", {x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis"}),
    s("text", {x: (left + width) / 2, y: height - 6, "text-anchor": "middle", class: "axis-title"}, "Time"),
    s("text", {x: 14, y: (top + height - bottom) / 2, "text-anchor": "middle", class: "axis-title",
               transform: `rotate(-90 14 ${(top + height - bottom) / 2})`}, label.split(" per ")[0]),
    series.map((one, index) => s("g", {class: "series", "data-group": one.group},
      s("polyline", {fill: "none", stroke: COLOURS[index % COLOURS.length], "stroke-width": 2,
                     points: one.points.map((p) => `${x(p.t)},${y(p.v)}`).join(" ")}),
      one.points.map((p) => s("circle", {cx: x(p.t), cy: y(p.v), r: 4, fill: COLOURS[index % COLOURS.length],
                                         class: "point"},
        s("title", {}, `${one.group}, ${new Date(p.t).toLocaleString()}: ${number(p.v, 4)}`))))));
}

function legend(series) {
  return h("ul", {class: "legend", "aria-label": "Legend"}, series.map((one, index) =>
    h("li", {}, s("svg", {width: 14, height: 14, "aria-hidden": "true"},
                  s("rect", {width: 14, height: 14, fill: COLOURS[index % COLOURS.length]})), " ", one.group)));
}

function dataTable(series, label) {
  const rows = series.flatMap((one) => one.points.map((p) => [one.group, new Date(p.t).toLocaleString(),
                                                               number(p.v, 6)]));
  return h("details", {class: "data"}, h("summary", {}, "Chart data as a table"),
    h("table", {}, h("caption", {}, label),
      h("thead", {}, h("tr", {}, ["Group", "Time", "Value"].map((name) => h("th", {scope: "col"}, name)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))))));
}
