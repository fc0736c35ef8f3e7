// The job list: every job of this key's owner with status, live progress and loss; pick several to compare.
// Filters and sorts as `GET /v1/jobs` does: status, a part of the name, a tag (key:value or key), a `filter` (terms
// over params, metrics, tags and status), the sort.

import { ApiError, FINAL, getJSON, sleep } from "./api.js";
import { formatNumber, formatTime, h, jobTitle, progressBar, statusBadge } from "./dom.js";

const POLL_MS = 1000;
const PAGE = 50;
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const SORTS = [
  ["-created_at", "newest first"], ["created_at", "oldest first"], ["loss", "lowest loss"],
  ["val_loss", "lowest val_loss"], ["-val_accuracy", "highest val_accuracy"],
];

function jobRow(job, selected, onSelect) {
  const title = jobTitle(job);
  const select = h("input", {
    type: "checkbox", checked: selected.has(job.id), "aria-label": `Select ${title} to compare`,
    onchange: () => onSelect(job.id, select.checked),
  });
  return h("tr", { "data-job-id": job.id },
    h("td", { class: "select" }, select),
    h("td", { class: "name" }, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, title)),
    h("td", { class: "state" }),
    h("td", { class: "progress" }),
    h("td", { class: "loss num" }),
    h("td", { class: "created" }, formatTime(job.created_at)),
  );
}

function updateRow(row, job) {
  const { epoch, epochs } = job.progress;
  row.querySelector(".state").replaceChildren(statusBadge(job.status));
  row.querySelector(".progress").replaceChildren(progressBar(job), h("span", { class: "epochs" }, `${epoch} / ${epochs}`));
  row.querySelector(".loss").textContent = formatNumber(job.metrics?.loss);
}

/** Rows in the list's order; existing rows stay in place (and keep focus) unless the order changed. */
function renderRows(tbody, jobs, selected, onSelect) {
  const rows = new Map([...tbody.rows].map((row) => [row.dataset.jobId, row]));
  const wanted = jobs.map((job) => {
    const row = rows.get(job.id) ?? jobRow(job, selected, onSelect);
    updateRow(row, job);
    return row;
  });
  const same = wanted.length === tbody.rows.length && wanted.every((row, i) => tbody.rows[i] === row);
  if (!same) tbody.replaceChildren(...wanted);
}

export async function showJobs(root, signal) {
  const selected = new Set();
  let status = "";
  let search = { name: "", tag: "", filter: "", sort: "-created_at" };
  let limit = PAGE;
  let refresh = () => {};

  const compare = h("button", { type: "button", disabled: true,
    onclick: () => { location.hash = `#/compare/${[...selected].map(encodeURIComponent).join(",")}`; } }, "Compare selected");
  const onSelect = (id, on) => {
    if (on) selected.add(id);
    else selected.delete(id);
    compare.disabled = selected.size < 2;
    compare.textContent = `Compare selected (${selected.size})`;
  };
  const filter = h("select", { id: "status-filter", onchange: () => { status = filter.value; refresh(); } },
    h("option", { value: "" }, "all"), STATUSES.map((s) => h("option", { value: s }, s)));
  const typed = (id, key, label) => {
    const input = h("input", { id, type: "search", placeholder: label, "aria-label": label,
      onchange: () => { search = { ...search, [key]: input.value.trim() }; refresh(); } });
    return input;
  };
  const sort = h("select", { id: "sort-order", onchange: () => { search = { ...search, sort: sort.value }; refresh(); } },
    SORTS.map(([value, label]) => h("option", { value }, label)));
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No jobs yet. Submit one with POST /v1/jobs (see the API docs).");
  const more = h("button", { type: "button", hidden: true, onclick: () => { limit += PAGE; refresh(); } }, "Show more");
  const live = h("p", { class: "note", role: "status" });

  root.replaceChildren(h("section", { class: "jobs" },
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" }, h("label", { for: "status-filter" }, "Status "), filter,
      typed("name-filter", "name", "Name contains"), typed("tag-filter", "tag", "Tag key:value"),
      typed("where-filter", "filter", "Filter, e.g. params.optimizer.lr > 0.01 and metrics.loss < 0.1"),
      h("label", { for: "sort-order" }, "Sort "), sort, compare),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Compare")),
        h("th", { scope: "col" }, "Job"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Progress"),
        h("th", { scope: "col", class: "num" }, "Loss"), h("th", { scope: "col", class: "created" }, "Created"))),
      tbody)),
    empty, more, live));

  // Polling one short request a second, not a stream per job: browsers allow only six connections per host.
  while (!signal.aborted) {
    const wake = new Promise((resolve) => { refresh = resolve; });
    const query = new URLSearchParams({ limit: String(Math.min(limit, 200)) });
    if (status) query.set("status", status);
    for (const key of ["name", "tag", "filter"]) if (search[key]) query.set(key, search[key]);
    if (search.sort !== "-created_at") query.set("sort", search.sort);
    let page;
    try {
      page = await getJSON(`/v1/jobs?${query}`, { signal });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 422) throw error;
      live.textContent = error.message;  // e.g. a malformed tag or filter: say so, and wait for the next change
      await Promise.race([sleep(POLL_MS, signal), wake]);
      continue;
    }
    renderRows(tbody, page.items, selected, onSelect);
    empty.hidden = page.items.length > 0;
    const filtered = status || search.name || search.tag || search.filter;
    empty.textContent = filtered ? "No jobs match." : "No jobs yet. Submit one with POST /v1/jobs (see the API docs).";
    more.hidden = !page.next_cursor || limit >= 200;
    const running = page.items.filter((job) => !FINAL.has(job.status)).length;
    live.textContent = running ? `${running} queued or running; updates every second.` : "";
    await Promise.race([sleep(POLL_MS, signal), wake]);
  }
}
