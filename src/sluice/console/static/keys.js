// Managed API keys: create (the secret shown once, with a copy button), list with spend against budget, edit
// scopes, limits, budget and expiry, revoke, rotate (/admin/keys, /admin/spend).

import {api} from "./api.js";
import {badge, field, h, message, number, usd, when} from "./dom.js";

const SCOPES = [["models", "Models"], ["providers", "Providers"], ["projects", "Projects"], ["services", "Services"]];
const LIMITS = [["requests_per_minute", "Requests per minute"], ["tokens_per_minute", "Tokens per minute"],
                ["max_concurrent", "Max concurrent requests"]];
const PERIODS = ["daily", "weekly", "monthly", "total"];

export function render(page, {unauthorized}) {
  const secret = h("div", {id: "key-secret"});
  const status = h("div", {id: "keys-status"});
  const list = h("div", {id: "keys-list"}, message("Loading keys…"));
  const formSlot = h("div", {id: "key-form-slot"});
  const ctx = {secret, status, list, formSlot, unauthorized};
  ctx.reload = () => load(ctx);
  ctx.edit = (record) => formSlot.replaceChildren(keyForm(ctx, record));
  page.append(h("h1", {}, "API keys"), secret, status, formSlot, list);
  formSlot.append(keyForm(ctx, null));
  ctx.reload();
}

function fail(ctx, what, error) {
  if (!ctx.unauthorized(error)) say(ctx, `${what}: ${error.message}`, "error");
}

/** A status line that takes the focus: the control that was clicked may be gone once the list is redrawn. */
function say(ctx, text, kind = "info") {
  const line = message(text, kind);
  line.tabIndex = -1;
  ctx.status.replaceChildren(line);
  line.focus();
}

async function load(ctx) {
  let keys;
  try {
    keys = (await api("admin/keys", {params: {include_revoked: "true"}})).data;
  } catch (error) {
    fail(ctx, "Could not list the keys", error);
    ctx.list.replaceChildren();
    return;
  }
  const spend = await api("admin/spend", {params: {limit: 1000}}).then((r) => r.data).catch(() => []);
  ctx.list.replaceChildren(keyTable(ctx, keys, spend));
}

function list(values) {
  return values && values.length ? values.join(", ") : "all";
}

function spentOf(record, spend) {
  if (!record.budget) return "no budget";
  const row = spend.find((entry) => entry.key_id === record.id);  // the most recently charged period first
  const spent = row ? row.spent_usd : 0;
  return `${usd(spent)} of ${usd(record.budget.usd)} (${record.budget.period})`;
}

function keyTable(ctx, keys, spend) {
  if (!keys.length) return message("No managed keys yet.");
  const headings = ["Name", "Id", "Prefix", "Status", "Scopes", "Limits", "Spend / budget", "Expires", "Created",
                    "Actions"];
  return h("div", {class: "table-wrap"}, h("table", {id: "keys-table"},
    h("caption", {}, "Managed keys, newest first"),
    h("thead", {}, h("tr", {}, headings.map((name) => h("th", {scope: "col"}, name)))),
    h("tbody", {}, keys.map((record) => keyRow(ctx, record, spend)))));
}

function keyRow(ctx, record, spend) {
  const limits = record.limits
    ? LIMITS.filter(([name]) => record.limits[name]).map(([name, label]) => `${label}: ${number(record.limits[name])}`)
    : [];
  const active = record.status === "active";
  const actions = h("div", {class: "row-actions"});
  const named = (verb) => `${verb} key ${record.name}`;
  actions.append(
    h("button", {type: "button", class: "small", "aria-label": named("Edit"), disabled: !active,
                 onclick: () => ctx.edit(record)}, "Edit"),
    h("button", {type: "button", class: "small", "aria-label": named("Rotate"), disabled: !active,
                 onclick: () => rotate(ctx, record)}, "Rotate"),
    h("button", {type: "button", class: "small danger", "aria-label": named("Revoke"), disabled: !active,
                 onclick: () => confirmRevoke(ctx, record, actions)}, "Revoke"));
  return h("tr", {"data-key-id": record.id, "data-key-name": record.name},
    h("td", {}, record.name), h("td", {}, h("code", {}, record.id)), h("td", {}, h("code", {}, record.prefix)),
    h("td", {class: "key-status"}, badge(record.status, active)),
    h("td", {}, h("ul", {class: "plain"},
      SCOPES.map(([name, label]) => h("li", {}, `${label}: ${list(record[name])}`)),
      record.admin ? h("li", {}, "Admin") : null)),
    h("td", {}, limits.length ? limits.join("; ") : "defaults"),
    h("td", {}, spentOf(record, spend)),
    h("td", {}, record.expires_at ? when(record.expires_at) : "never"),
    h("td", {}, when(record.created_at)),
    h("td", {}, actions));
}

function confirmRevoke(ctx, record, actions) {
  const keep = [...actions.childNodes];
  const cancel = h("button", {type: "button", class: "small secondary",
                              onclick: () => actions.replaceChildren(...keep)}, "Cancel");
  actions.replaceChildren(h("span", {}, `Revoke ${record.name}? `),
    h("button", {type: "button", class: "small danger", "aria-label": `Confirm: revoke key ${record.name}`,
                 onclick: () => revoke(ctx, record)}, "Yes, revoke"), cancel);
  cancel.focus();
}

async function revoke(ctx, record) {
  try {
    await api(`admin/keys/${encodeURIComponent(record.id)}/revoke`, {method: "POST"});
    say(ctx, `Key ${record.name} is revoked.`);
  } catch (error) {
    fail(ctx, "Could not revoke the key", error);
  }
  ctx.reload();
}

async function rotate(ctx, record) {
  try {
    const created = await api(`admin/keys/${encodeURIComponent(record.id)}/rotate`, {method: "POST",
                                                                                   body: {grace_seconds: 0}});
    showSecret(ctx, created, `Key ${record.name} was rotated: the old secret no longer works.`);
  } catch (error) {
    fail(ctx, "Could not rotate the key", error);
  }
  ctx.reload();
}

function showSecret(ctx, created, note) {
  const value = h("code", {id: "new-key-secret", class: "secret"}, created.key);
  const copied = h("span", {role: "status", class: "hint"});
  const copy = h("button", {type: "button", id: "copy-secret", onclick: async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      copied.textContent = "Copied.";
    } catch {
      getSelection().selectAllChildren(value);
      copied.textContent = "Selected: press Ctrl+C (or ⌘C) to copy.";
    }
  }}, "Copy the secret");
  const panel = h("section", {class: "card secret-panel", "aria-labelledby": "secret-title"},
    h("h2", {id: "secret-title", tabindex: "-1"}, `Secret of ${created.name}`),
    h("p", {}, note, " This secret is shown once: copy it now, it cannot be seen again."),
    h("p", {}, value), h("div", {class: "actions"}, copy,
      h("button", {type: "button", class: "secondary", onclick: () => ctx.secret.replaceChildren()},
        "Hide the secret")),
    copied);
  ctx.secret.replaceChildren(panel);
  panel.querySelector("h2").focus();
}

function names(text) {
  const values = text.split(",").map((value) => value.trim()).filter(Boolean);
  return values.length ? values : null;
}

function keyForm(ctx, record) {
  const editing = record !== null;
  const prefix = editing ? "edit" : "new";
  const input = (name, attrs = {}) => h("input", {name, id: `${prefix}-${name}`, ...attrs});
  const value = (list) => (list ? list.join(", ") : "");
  const form = h("form", {class: "card key-form", id: `${prefix}-key-form`, "aria-labelledby": `${prefix}-key-title`},
    h("h2", {id: `${prefix}-key-title`, tabindex: "-1"}, editing ? `Edit key ${record.name}` : "Create a key"),
    h("div", {class: "grid"},
      field("Name", input("name", {required: true, value: record?.name || "", maxlength: 128})),
      SCOPES.map(([name, label]) => field(label, input(name, {value: value(record?.[name])}),
                                          "Comma-separated names; empty for all")),
      LIMITS.map(([name, label]) => field(label, input(name, {type: "number", min: 1, step: 1,
                                                              value: record?.limits?.[name] ?? ""}),
                                          "Empty: the config's default")),
      field("Budget (USD)",
            input("budget_usd", {type: "number", min: 0, step: "any", value: record?.budget?.usd ?? ""}),
            "Empty: the config's default"),
      field("Budget period", h("select", {name: "budget_period", id: `${prefix}-budget_period`},
        PERIODS.map((period) => h("option", {value: period, selected: (record?.budget?.period || "monthly") === period},
                                  period)))),
      field("Expires in days", input("expires_in_days", {type: "number", min: 0.001, step: "any"}),
            editing ? `Empty: unchanged (${record.expires_at ? when(record.expires_at) : "never"})` : "Empty: never"),
      editing && record.expires_at
        ? h("label", {class: "check"}, input("never_expires", {type: "checkbox"}), " Never expires")
        : null,
      h("label", {class: "check"}, input("admin", {type: "checkbox", checked: record?.admin || false}),
        " Admin scope (may call /admin)")),
    h("div", {class: "actions"},
      h("button", {type: "submit"}, editing ? "Save changes" : "Create key"),
      editing ? h("button", {type: "button", class: "secondary", onclick: () => ctx.edit(null)}, "Cancel") : null));
  if (!editing) form.querySelector("h2").removeAttribute("tabindex");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(ctx, record, settingsOf(new FormData(form), form));
  });
  if (editing) queueMicrotask(() => form.querySelector("h2").focus());
  return form;
}

function settingsOf(data, form) {
  const settings = {name: String(data.get("name")).trim(), admin: form.elements.admin.checked};
  for (const [name] of SCOPES) settings[name] = names(String(data.get(name) || ""));
  const limits = {};
  for (const [name] of LIMITS) if (data.get(name)) limits[name] = Number(data.get(name));
  settings.limits = Object.keys(limits).length ? limits : null;
  settings.budget = data.get("budget_usd") !== ""
    ? {usd: Number(data.get("budget_usd")), period: data.get("budget_period")} : null;
  if (data.get("expires_in_days")) settings.expires_in_days = Number(data.get("expires_in_days"));
  else if (form.elements.never_expires?.checked) settings.expires_at = null;
  return settings;
}

async function submit(ctx, record, settings) {
  try {
    if (record === null) {
      const created = await api("admin/keys", {method: "POST", body: settings});
      showSecret(ctx, created, `Key ${created.name} (${created.id}) was created.`);
      ctx.formSlot.replaceChildren(keyForm(ctx, null));
    } else {
      await api(`admin/keys/${encodeURIComponent(record.id)}`, {method: "PATCH", body: settings});
      say(ctx, `Key ${settings.name} was saved.`);
      ctx.edit(null);
    }
  } catch (error) {
    fail(ctx, record === null ? "Could not create the key" : "Could not save the key", error);
    return;
  }
  ctx.reload();
}
