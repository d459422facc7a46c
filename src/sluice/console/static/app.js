// The console's shell: sign-in with the admin key, the hash routes (#/log, #/usage, …), sign-out.

import {ApiError, adminKey, api, forgetAdminKey, saveAdminKey} from "./api.js";
import {field, h, message} from "./dom.js";
import * as audit from "./audit.js";
import * as keys from "./keys.js";
import * as log from "./log.js";
import * as upstreams from "./upstreams.js";
import * as usage from "./usage.js";

const PAGES = {log, usage, keys, upstreams, audit};
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signOutButton = document.getElementById("sign-out");
let leaving = null;  // the AbortController of the page on screen

function route() {
  const [name, query] = location.hash.replace(/^#\/?/, "").split("?");
  return {name: PAGES[name] ? name : "log", params: new URLSearchParams(query || "")};
}

function signedIn(on) {
  nav.hidden = !on;
  signOutButton.hidden = !on;
}

function showSignIn(note) {
  leaving?.abort();
  signedIn(false);
  const input = h("input", {type: "password", name: "admin-key", autocomplete: "current-password", required: true,
                            id: "admin-key"});
  const status = h("div", {id: "sign-in-status"}, note ? message(note, "error") : null);
  const form = h("form", {class: "card sign-in", id: "sign-in", "aria-labelledby": "sign-in-title"},
    h("h1", {id: "sign-in-title"}, "Sign in"),
    h("p", {}, "Paste the gateway's admin key (SLUICE_ADMIN_KEY, or a key with the admin scope). It is kept in this ",
      "tab's session storage only and sent as Authorization: Bearer."),
    field("Admin key", input),
    h("button", {type: "submit"}, "Sign in"),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren(message("Checking the key…"));
    saveAdminKey(input.value.trim());
    try {
      await api("admin/health");
    } catch (error) {
      forgetAdminKey();
      const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
      const text = refused
        ? `The gateway refused this key (${error.status}): ${error.message} Check the admin key and try again.`
        : `Could not reach the gateway: ${error.message}`;
      status.replaceChildren(message(text, "error"));
      input.focus();
      input.select();
      return;
    }
    if (!location.hash.startsWith("#/")) location.hash = "#/log";
    render();
  });
  main.replaceChildren(form);
  input.focus();
}

/** What a page calls when the admin API answers 401: the key no longer works, so sign in again. */
function unauthorized(error) {
  if (error instanceof ApiError && error.status === 401) {
    forgetAdminKey();
    showSignIn("The admin key stopped working (401). Sign in again.");
    return true;
  }
  return false;
}

function render() {
  if (!adminKey()) {
    showSignIn();
    return;
  }
  leaving?.abort();
  leaving = new AbortController();
  signedIn(true);
  const {name, params} = route();
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const page = h("section", {class: "page", id: `page-${name}`});
  main.replaceChildren(page);
  PAGES[name].render(page, {params, signal: leaving.signal, unauthorized});
}

signOutButton.addEventListener("click", () => {
  forgetAdminKey();
  history.replaceState(null, "", location.pathname);
  showSignIn();
});
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/")) {
    render();
    main.focus({preventScroll: true});
  }
});
render();
