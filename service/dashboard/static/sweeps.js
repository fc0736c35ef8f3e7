// Sweeps: their list, and a sweep's page with its members as a table of the hyperparameters that differ between
// them, sortable by any column; its best members compare on one chart.

import { FINAL, getJSON, request, sleep } from "./api.js";
import { formatNumber, formatTime, h, statusBadge } from "./dom.js";

const POLL_MS = 1000;
const COMPARE_AT_MOST = 12; // more lines than this on one chart stop being readable
const METRICS = [["loss", "Loss"], ["val_loss", "Val. loss"], ["accuracy", "Accuracy"], ["val_accuracy", "Val. accuracy"]];

const membersDone = ({ progress }) => `${progress.succeeded + progress.failed + progress.cancelled} / ${progress.members}`;

/** Every sweep of this key's owner (the newest 50), refreshed while any runs. */
export async function showSweeps(root, signal) {
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true }, "No sweeps yet. Submit one with POST /v1/sweeps (see the API docs).");
  root.replaceChildren(h("section", { class: "sweeps" },
    h("h1", {}, "Sweeps"),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Sweep"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Members done"), h("th", { scope: "col", class: "created" }, "Created"))),
      tbody)),
    empty));
  while (!signal.aborted) {
    const page = await getJSON("/v1/sweeps?limit=50", { signal });
    empty.hidden = page.items.length > 0;
    tbody.replaceChildren(...page.items.map((sweep) => h("tr", { "data-sweep-id": sweep.id },
      h("td", {}, h("a", { href: `#/sweeps/${encodeURIComponent(sweep.id)}` }, sweep.name || sweep.id)),
      h("td", {}, statusBadge(sweep.status)),
      h("td", { class: "num" }, membersDone(sweep)),
      h("td", { class: "created" }, formatTime(sweep.created_at)))));
    if (page.items.every((sweep) => FINAL.has(sweep.status))) return;
    await sleep(POLL_MS, signal);
  }
}

const formatValue = (v) => (v === null ? "none" : Array.isArray(v) ? `[${v.join(",")}]`
  : typeof v === "number" ? formatNumber(v) : typeof v === "object" ? JSON.stringify(v) : String(v));
export const formatValues = (values) => Object.entries(values).map(([k, v]) => `${k}=${formatValue(v)}`).join(", ");

/** The hyperparameters whose values differ between these members (all of them when none do). */
export function varying(entries) {
  const names = Object.keys(entries[0]?.hyperparameters ?? {});
  const differ = names.filter((name) => new Set(entries.map((e) => JSON.stringify(e.hyperparameters[name]))).size > 1);
  return differ.length ? differ : names;
}

/** Where an adaptive search stopped a member (ASHA), or the copies its weights came through (PBT). */
function searchNote(entry, sweep, rank) {
  if (entry.stop_reason) return `${entry.stop_reason} (epoch ${entry.stopped_early_at})`;
  const history = sweep.search_state?.pbt?.history?.[entry.job_id] ?? [];
  return history.filter((event) => event.source)
    .map((event) => `epoch ${event.epoch}: copied #${rank[event.source]}, ${formatValues(event.values)}`).join("; ");
}

/** The member table's columns: `key` sorts (numbers as numbers, the rest as text), `cell` draws. */
function columns(sweep) {
  const entries = sweep.leaderboard;
  const rank = { label: "Rank", num: true, key: (e) => e.rank,
    cell: (e) => h("a", { href: `#/jobs/${encodeURIComponent(e.job_id)}`, title: `job ${e.job_id}` }, `#${e.rank}`) };
  const params = varying(entries).map((name) => ({
    label: name, param: true, num: entries.every((e) => typeof e.hyperparameters[name] === "number"),
    key: (e) => sortable(e.hyperparameters[name]), cell: (e) => formatValue(e.hyperparameters[name]),
  }));
  const status = { label: "Status", key: (e) => e.status, cell: (e) => statusBadge(e.status) };
  const metrics = METRICS.filter(([key]) => entries.some((e) => e[key] != null))
    .map(([key, label]) => ({ label, num: true, key: (e) => e[key], cell: (e) => formatNumber(e[key]) }));
  // an objective the metric columns do not show (an evaluation measure, e.g. val_f1) gets a column of its own
  if (!METRICS.some(([key]) => key === sweep.objective.metric)) {
    metrics.push({ label: sweep.objective.metric, num: true, key: (e) => e.objective, cell: (e) => formatNumber(e.objective) });
  }
  const ranks = Object.fromEntries(entries.map((e) => [e.job_id, e.rank]));
  const notes = new Map(entries.map((e) => [e.job_id, searchNote(e, sweep, ranks)]));
  const note = { label: "Rung stop / PBT lineage", key: (e) => notes.get(e.job_id), cell: (e) => notes.get(e.job_id) };
  return [rank, ...params, status, ...metrics, ...([...notes.values()].some(Boolean) ? [note] : [])];
}

const sortable = (v) => (typeof v === "number" ? v : v === null || v === undefined ? null : formatValue(v));

/** Ascending or descending by one column; members without a value last either way, ties in rank order. */
function sorted(entries, column, descending) {
  const order = (a, b) => {
    const [x, y] = [column.key(a), column.key(b)];
    if (x === y) return a.rank - b.rank;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const by = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return descending ? -by : by;
  };
  return [...entries].sort(order);
}

const classes = (column) => [column.num && "num", column.param && "param"].filter(Boolean).join(" ") || null;

/** The members' table; `update(sweep)` redraws it in the order the user picked by a header (rank at first). */
function memberTable() {
  const head = h("tr");
  const tbody = h("tbody");
  let sort = { label: "Rank", descending: false };
  let sweep = null;
  let drawnHead = "";
  const pick = (label) => {
    sort = { label, descending: sort.label === label && !sort.descending };
    update(sweep);
    [...head.querySelectorAll("button")].find((button) => button.textContent === label)?.focus(); // its header was redrawn
  };
  function update(next) {
    sweep = next;
    const cols = columns(sweep);
    const column = cols.find((c) => c.label === sort.label) ?? cols[0];
    const headKey = JSON.stringify([cols.map(classes), cols.map((c) => c.label), column.label, sort.descending]);
    if (headKey !== drawnHead) { // redrawn only when it changes: a header button keeps the focus while the sweep runs
      drawnHead = headKey;
      head.replaceChildren(...cols.map((c) => h("th", {
        scope: "col", class: classes(c), "aria-sort": c === column ? (sort.descending ? "descending" : "ascending") : null,
      }, h("button", { type: "button", class: "sort", onclick: () => pick(c.label) }, c.label))));
    }
    tbody.replaceChildren(...sorted(sweep.leaderboard, column, sort.descending).map((entry) =>
      h("tr", { "data-job-id": entry.job_id }, cols.map((c) => h("td", { class: classes(c) }, c.cell(entry))))));
  }
  return { table: h("div", { class: "table-wrap" }, h("table", { class: "members" }, h("thead", {}, head), tbody)), update };
}

/** A sweep's page: status, how the worker ran it, its members, and a link comparing its best members. */
export async function showSweep(root, signal, id) {
  const title = h("h1");
  const summary = h("p", { class: "note", role: "status" });
  const compare = h("a", { class: "button" }, "Compare the best members");
  const message = h("p", { class: "message", role: "status" });
  const remove = h("button", { type: "button", class: "danger", onclick: async () => {
    if (!confirm(`Delete sweep ${title.textContent}? Every member goes with it, running ones too; this cannot be undone.`)) return;
    try {
      await request(`/v1/sweeps/${encodeURIComponent(id)}`, { method: "DELETE", signal });
      location.hash = "#/sweeps";
    } catch (err) {
      message.textContent = err.message;
      message.classList.add("error");
    }
  } }, "Delete sweep");
  const members = memberTable();
  root.replaceChildren(h("section", { class: "sweep" },
    h("p", { class: "crumbs" }, h("a", { href: "#/sweeps" }, "← All sweeps")), title, summary,
    h("p", { class: "actions" }, compare, remove), message, members.table));
  while (!signal.aborted) {
    const sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(id)}`, { signal });
    title.replaceChildren(sweep.name || sweep.id, " ", statusBadge(sweep.status));
    summary.textContent = `${membersDone(sweep)} members done, ranked by ${sweep.objective.metric} (${sweep.objective.mode}). ${sweep.execution ?? "Waiting for a worker."}`;
    const best = sweep.leaderboard.slice(0, COMPARE_AT_MOST).map((entry) => encodeURIComponent(entry.job_id));
    compare.href = `#/compare/${best.join(",")}`;
    members.update(sweep);
    if (FINAL.has(sweep.status)) return;
    await sleep(POLL_MS, signal);
  }
}
