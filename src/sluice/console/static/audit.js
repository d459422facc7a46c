// The audit trail: who changed what and when (GET /admin/audit), newest first, a page at a time.

import {ApiError, api} from "./api.js";
import {h, message, when} from "./dom.js";

export function render(page, {unauthorized}) {
  const body = h("tbody", {id: "audit-rows"});
  const status = h("div", {id: "audit-status"}, message("Loading the audit trail…"));
  const more = h("button", {type: "button", hidden: true}, "Load older entries");
  let cursor = null;
  const load = async () => {
    try {
      const page = await api("admin/audit", {params: {limit: 50, cursor}});
      body.append(...page.data.map(entryRow));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      status.replaceChildren(page.data.length || body.childElementCount ? "" : message("No changes recorded yet."));
    } catch (error) {
      if (unauthorized(error)) return;
      status.replaceChildren(error instanceof ApiError && error.status === 404
        ? message("This gateway has no audit trail (GET /admin/audit answered 404).")
        : message(`Could not read the audit trail: ${error.message}`, "error"));
    }
  };
  more.addEventListener("click", load);
  page.append(h("h1", {}, "Audit trail"), status,
    h("div", {class: "table-wrap"}, h("table", {id: "audit-table"},
      h("caption", {}, "Admin changes, newest first"),
      h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Target", "Details"]
        .map((name) => h("th", {scope: "col"}, name)))),
      body)),
    more);
  load();
}

function entryRow(entry) {
  const details = entry.details && typeof entry.details === "object" ? JSON.stringify(entry.details) : entry.details;
  return h("tr", {"data-audit-id": entry.id},
    h("td", {}, h("time", {datetime: entry.at}, when(entry.at))), h("td", {}, entry.actor ?? "–"),
    h("td", {}, entry.action ?? "–"), h("td", {}, entry.target ?? "–"), h("td", {}, h("code", {}, details ?? "")));
}
