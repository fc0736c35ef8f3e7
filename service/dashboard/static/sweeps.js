// Sweeps: their list, and a sweep's page with its members as a table of the hyperparameters that differ between
// them, sortable by any column, and in parallel coordinates; its best members compare on one chart.

import { FINAL, getJSON, request, sleep } from "./api.js";
import { COLORS } from "./charts.js";
import { formatNumber, formatTime, h, statusBadge } from "./dom.js";
import { linkedViews } from "./parallel.js";
import { METRICS, differing, formatValues, metricColumns, paramChooser, paramColumns } from "./params.js";

const POLL_MS = 1000;
const COMPARE_AT_MOST = 12; // more lines than this on one chart stop being readable

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

/** Where an adaptive search stopped a member (ASHA), or the copies its weights came through (PBT). */
function searchNote(entry, sweep, rank) {
  if (entry.stop_reason) return `${entry.stop_reason} (epoch ${entry.stopped_early_at})`;
  const history = sweep.search_state?.pbt?.history?.[entry.job_id] ?? [];
  return history.filter((event) => event.source)
    .map((event) => `epoch ${event.epoch}: copied #${rank[event.source]}, ${formatValues(event.values)}`).join("; ");
}

/** The member table's columns: rank, the hyperparameters that differ (all with "show all"), status, metrics, notes. */
function columns(sweep, names) {
  const entries = sweep.leaderboard;
  const rank = { label: "Rank", num: true, key: (e) => e.rank,
    cell: (e) => h("a", { href: `#/jobs/${encodeURIComponent(e.job_id)}`, title: `job ${e.job_id}` }, `#${e.rank}`) };
  const status = { label: "Status", key: (e) => e.status, cell: (e) => statusBadge(e.status) };
  // an objective the metric columns do not show (an evaluation measure, e.g. val_f1) gets a column of its own
  const objective = METRICS.some(([key]) => key === sweep.objective.metric) ? [] :
    [{ label: sweep.objective.metric, num: true, key: (e) => e.objective, cell: (e) => formatNumber(e.objective) }];
  const ranks = Object.fromEntries(entries.map((e) => [e.job_id, e.rank]));
  const notes = new Map(entries.map((e) => [e.job_id, searchNote(e, sweep, ranks)]));
  const note = { label: "Rung stop / PBT lineage", key: (e) => notes.get(e.job_id), cell: (e) => notes.get(e.job_id) };
  return [rank, ...paramColumns(entries, (e) => e.hyperparameters, names), status, ...metricColumns(entries, entryMetrics), ...objective,
    ...([...notes.values()].some(Boolean) ? [note] : [])];
}

const entryMetrics = (entry) => Object.fromEntries(METRICS.map(([name]) => [name, entry[name]]));

/** The members across the hyperparameters that differ and the metric they are ranked by, colored by rank. */
function drawParallel(parallel, sweep) {
  const lines = sweep.leaderboard.map((e) => ({
    id: e.job_id, label: `#${e.rank}`, color: COLORS[(e.rank - 1) % COLORS.length],
    href: `#/jobs/${encodeURIComponent(e.job_id)}`, params: e.hyperparameters, metric: e.objective ?? e[sweep.ranked_by],
  }));
  parallel.update(differing(sweep.leaderboard.map((e) => e.hyperparameters)), sweep.ranked_by, lines);
}

/** A sweep's page: status, how the worker ran it, its members, and a link comparing its best members. */
export async function showSweep(root, signal, id) {
  const title = h("h1");
  const summary = h("p", { class: "note", role: "status" });
  const compare = h("a", { class: "button" }, "Compare the best members");
  const deliveries = h("a", { class: "button", href: `#/sweeps/${encodeURIComponent(id)}/deliveries`, hidden: true },
    "Webhook deliveries");
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
  let sweep = null;
  const { table, parallel } = linkedViews({ className: "members", rowId: (e) => e.job_id, sortBy: "Rank" }, "Each line "
    + "a member, colored by rank: its hyperparameters that differ, then the metric it is ranked by. Hover or focus one "
    + "to find its row.");
  const chooser = paramChooser(() => redraw());
  const redraw = () => {
    const names = chooser.names(sweep.leaderboard.map((e) => e.hyperparameters));
    table.update(columns(sweep, names), sweep.leaderboard);
    drawParallel(parallel, sweep);
  };
  signal.addEventListener("abort", () => parallel.destroy());
  root.replaceChildren(h("section", { class: "sweep" },
    h("p", { class: "crumbs" }, h("a", { href: "#/sweeps" }, "← All sweeps")), title, summary,
    h("p", { class: "actions" }, compare, deliveries, remove), message, parallel.element, h("div", { class: "toolbar" }, chooser.element),
    table.element));
  while (!signal.aborted) {
    sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(id)}`, { signal });
    title.replaceChildren(sweep.name || sweep.id, " ", statusBadge(sweep.status));
    summary.textContent = `${membersDone(sweep)} members done, ranked by ${sweep.objective.metric} (${sweep.objective.mode}). ${sweep.execution ?? "Waiting for a worker."}`;
    const best = sweep.leaderboard.slice(0, COMPARE_AT_MOST).map((entry) => encodeURIComponent(entry.job_id));
    compare.href = `#/compare/${best.join(",")}`;
    deliveries.hidden = !sweep.request?.notify;
    redraw();
    if (FINAL.has(sweep.status)) return;
    await sleep(POLL_MS, signal);
  }
}
