// Upstreams: every model's deployments (/admin/health) and every service's instances (/admin/services), with
// health, breaker, calls in flight and latency; drain or restore an instance; run the health checks now.

import {ApiError, api} from "./api.js";
import {badge, h, message, number, when} from "./dom.js";

export function render(page, {unauthorized}) {
  const status = h("div", {id: "upstreams-status"});
  const models = h("section", {id: "models", "aria-labelledby": "models-title"});
  const services = h("section", {id: "services", "aria-labelledby": "services-title"});
  const ctx = {status, models, services, unauthorized};
  page.append(h("h1", {}, "Upstreams"),
    h("div", {class: "actions"}, h("button", {type: "button", onclick: () => refresh(ctx)}, "Refresh")),
    status, models, services);
  refresh(ctx);
}

function fail(ctx, what, error) {
  if (!ctx.unauthorized(error)) ctx.status.replaceChildren(message(`${what}: ${error.message}`, "error"));
}

async function refresh(ctx) {
  await Promise.all([loadModels(ctx), loadServices(ctx)]);
}

async function loadModels(ctx, method = "GET") {
  try {
    const report = await api(method === "POST" ? "admin/health/check" : "admin/health", {method});
    ctx.models.replaceChildren(...modelsView(ctx, report));
  } catch (error) {
    fail(ctx, "Could not read the deployments' health", error);
  }
}

async function loadServices(ctx) {
  try {
    const report = await api("admin/services");
    ctx.services.replaceChildren(h("h2", {id: "services-title"}, "Services"),
                                 ...report.data.map((service) => serviceView(ctx, service)));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      ctx.services.replaceChildren(h("h2", {id: "services-title"}, "Services"),
                                   message("This gateway has no services (no routes: in sluice.yaml)."));
      return;
    }
    fail(ctx, "Could not read the services", error);
  }
}

const verb = (instance) => (instance.draining ? "restore" : "drain");

function breaker(view) {
  if (!view) return "none";
  return view.state === "open" ? `open (retry in ${number(view.retry_in_seconds, 1)} s)` : view.state.replace("_", " ");
}

function lastCheck(check) {
  if (!check) return "–";
  return `${check.result}${check.status ? ` (${check.status})` : ""} at ${when(check.at)}`;
}

function modelsView(ctx, report) {
  return [
    h("h2", {id: "models-title"}, "Models and deployments"),
    h("p", {}, "Gateway readiness: ", badge(report.status.replace("_", " "), report.status === "ready"),
      report.reasons.length ? ` ${report.reasons.join("; ")}` : "", ` Database: ${report.database.state}.`),
    h("div", {class: "actions"}, h("button", {type: "button", id: "check-models",
                                            onclick: () => loadModels(ctx, "POST")}, "Check deployments now")),
    ...report.models.map((model) => h("div", {class: "table-wrap"}, h("table", {"data-model": model.name},
      h("caption", {}, `${model.name}: `, badge(model.serving ? "serving" : "not serving", model.serving)),
      h("thead", {}, h("tr", {}, ["Deployment", "Healthy", "Usable", "Breaker", "In flight", "Latency ms",
                                  "Last check", "Last error"].map((name) => h("th", {scope: "col"}, name)))),
      h("tbody", {}, model.deployments.map((d) => h("tr", {},
        h("td", {}, h("code", {}, d.id)), h("td", {}, badge(d.healthy ? "healthy" : "unhealthy", d.healthy)),
        h("td", {}, badge(d.usable ? "usable" : "refusing", d.usable)), h("td", {}, breaker(d.breaker)),
        h("td", {class: "num"}, number(d.in_flight)), h("td", {class: "num"}, number(d.latency_ms, 1)),
        h("td", {}, lastCheck(d.last_check)), h("td", {}, d.last_error || "–")))))))];
}

function serviceView(ctx, service) {
  const section = h("section", {class: "service", "data-service": service.name,
                                "aria-labelledby": `service-${service.name}`});
  const act = async (path, what, focus) => {
    try {
      const view = serviceView(ctx, await api(path, {method: "POST"}));
      section.replaceWith(view);
      view.querySelector(focus)?.focus();  // the same control, redrawn (Drain became Restore)
    } catch (error) {
      fail(ctx, what, error);
    }
  };
  const base = `admin/services/${encodeURIComponent(service.name)}`;
  section.append(...[
    h("h3", {id: `service-${service.name}`}, `${service.name} `,
      badge(service.serving ? "serving" : "not serving", service.serving)),
    h("p", {}, `Strategy ${service.strategy}; health check: ${service.health_check || "none"}.`),
    service.health_check
      ? h("div", {class: "actions"}, h("button", {
        type: "button", class: "check-service", "aria-label": `Check ${service.name}'s instances now`,
        onclick: () => act(`${base}/health-check`, "Could not check", ".check-service"),
      }, "Check now"))
      : null,
    h("div", {class: "table-wrap"}, h("table", {},
      h("caption", {}, `Instances of ${service.name}`),
      h("thead", {}, h("tr", {}, ["Instance", "URL", "Weight", "State", "Healthy", "Breaker", "In flight",
                                  "Latency ms", "Last check", "Action"].map((name) => h("th", {scope: "col"}, name)))),
      h("tbody", {}, service.instances.map((i) => h("tr", {"data-instance": i.instance_id},
        h("td", {}, h("code", {}, i.instance_id)), h("td", {}, i.url), h("td", {class: "num"}, number(i.weight, 2)),
        h("td", {class: "instance-state"}, badge(i.draining ? "draining" : "in service", !i.draining)),
        h("td", {}, badge(i.healthy ? "healthy" : "unhealthy", i.healthy)), h("td", {}, breaker(i.breaker)),
        h("td", {class: "num"}, number(i.in_flight)), h("td", {class: "num"}, number(i.latency_ms, 1)),
        h("td", {}, lastCheck(i.last_check)),
        h("td", {}, h("button", {
          type: "button", class: "small", "aria-label": `${i.draining ? "Restore" : "Drain"} instance ${i.url}`,
          onclick: () => act(`${base}/instances/${encodeURIComponent(i.instance_id)}/${verb(i)}`,
                             `Could not ${verb(i)}`, `tr[data-instance="${i.instance_id}"] button`),
        }, i.draining ? "Restore" : "Drain")))))))].filter(Boolean));
  return section;
}
