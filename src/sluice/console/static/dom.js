// Building DOM nodes without innerHTML: text is always text, attributes are set one by one.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** An HTML element: h("button", {type: "button", onclick: f}, "Save"). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as `h`. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

let fields = 0;

/** A labelled form control (<label for>), with an optional hint that describes it (aria-describedby) without
 * becoming part of its accessible name. */
export function field(label, control, hint) {
  if (!control.id) control.id = `field-${++fields}`;
  let note = null;
  if (hint) {
    note = h("span", {class: "hint", id: `${control.id}-hint`}, hint);
    control.setAttribute("aria-describedby", note.id);
  }
  return h("div", {class: "field"}, h("label", {class: "label", for: control.id}, label), control, note);
}

/** A live message region (role=status, or role=alert for errors). */
export function message(text, kind = "info") {
  return h("p", {class: `message ${kind}`, role: kind === "error" ? "alert" : "status"}, text);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString(undefined, {maximumFractionDigits: digits});
}

export function usd(value) {
  if (value === null || value === undefined) return "–";
  return "$" + Number(value).toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 6});
}

export function pretty(value) {
  if (value === null || value === undefined) return "(none)";
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}

/** A badge whose meaning is in its text as well as its colour. */
export function badge(text, good) {
  return h("span", {class: `badge ${good ? "good" : "bad"}`}, text);
}
