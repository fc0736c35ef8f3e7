// The dashboard's entry: hash routes to views, the API key prompt, and errors shown in place.

import { ApiError, Unauthorized, getKey, setKey } from "./api.js";
import { showCompare } from "./compare.js";
import { showDeliveries } from "./deliveries.js";
import { h } from "./dom.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";
import { showSweep, showSweeps } from "./sweeps.js";

const main = document.getElementById("main");
let current = null;

// Hash routes: the server serves one page; a sweep's page links to #/compare/<its best members' ids>.
const ROUTES = [
  [/^#\/jobs\/([^/]+)$/, (signal, [, id]) => showJob(main, signal, decodeURIComponent(id))],
  [/^#\/(jobs|sweeps)\/([^/]+)\/deliveries$/, (signal, [, kind, id]) => showDeliveries(main, signal, kind, decodeURIComponent(id))],
  [/^#\/sweeps\/?$/, (signal) => showSweeps(main, signal)],
  [/^#\/sweeps\/([^/]+)$/, (signal, [, id]) => showSweep(main, signal, decodeURIComponent(id))],
  [/^#\/compare\/([^/]+)$/, (signal, [, ids]) => showCompare(main, signal, ids.split(",").map(decodeURIComponent))],
  [/^(#\/?)?$/, (signal) => showJobs(main, signal)],
];

function keyForm(reason) {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "off", spellcheck: "false", required: true });
  const save = (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    route();
  };
  const forget = () => {
    setKey(null);
    route();
  };
  main.replaceChildren(h("section", { class: "key-prompt" },
    h("h1", {}, "API key"),
    h("p", {}, reason),
    h("form", { onsubmit: save },
      h("label", { for: "api-key" }, "API key"),
      input,
      h("p", { class: "note" }, "Made with `fitserve keys create --owner NAME`. It is kept in this browser only (localStorage)."),
      h("div", { class: "actions" },
        h("button", { type: "submit" }, "Save key"),
        getKey() && h("button", { type: "button", onclick: forget }, "Forget key")))));
  input.focus();
}

function showError(err) {
  const text = err instanceof ApiError && err.status === 404 ? "Not found: no such job for this API key." : err.message;
  main.replaceChildren(h("section", {}, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, text),
    h("p", {}, h("a", { href: "#/" }, "← All jobs"))));
}

async function route() {
  current?.abort();
  const controller = (current = new AbortController());
  const hash = location.hash;
  const [pattern, view] = ROUTES.find(([re]) => re.test(hash)) ?? ROUTES.at(-1);
  try {
    await view(controller.signal, hash.match(pattern) ?? []);
  } catch (err) {
    if (controller.signal.aborted) return; // left for another view; its own errors no longer matter
    if (err instanceof Unauthorized) {
      keyForm(getKey() ? `The server refused this key (${err.message}). Enter another.` : "This server needs an API key.");
    } else {
      showError(err);
    }
  }
}

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true }); // screen readers start reading the new view
});
document.getElementById("key-button").addEventListener("click", () => {
  current?.abort();
  keyForm(getKey() ? "A key is saved in this browser. Enter another or forget it." : "No key is saved; the server is open.");
});
route();
