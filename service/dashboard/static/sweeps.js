// Sweeps: the list (on the jobs page) and a sweep's page with its leaderboard; its members compare on one chart.

import { FINAL, getJSON, request, sleep } from "./api.js";
import { formatNumber, formatTime, h, statusBadge } from "./dom.js";

const POLL_MS = 1000;
const COMPARE_AT_MOST = 12; // more lines than this on one chart stop being readable

const membersDone = ({ progress }) => `${progress.succeeded + progress.failed + progress.cancelled} / ${progress.members}`;

/** The sweeps of this key's owner, as a small table that refreshes with the job list. */
export function sweepList() {
  const tbody = h("tbody");
  const section = h("section", { class: "sweeps", hidden: true },
    h("h2", {}, "Sweeps"),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Sweep"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Members done"), h("th", { scope: "col", class: "created" }, "Created"))),
      tbody)));
  const update = async (signal) => {
    const page = await getJSON("/v1/sweeps?limit=20", { signal });
    section.hidden = page.items.length === 0;
    tbody.replaceChildren(...page.items.map((sweep) => h("tr", { "data-sweep-id": sweep.id },
      h("td", {}, h("a", { href: `#/sweeps/${encodeURIComponent(sweep.id)}` }, sweep.name || sweep.id)),
      h("td", {}, statusBadge(sweep.status)),
      h("td", { class: "num" }, membersDone(sweep)),
      h("td", { class: "created" }, formatTime(sweep.created_at)))));
  };
  return { section, update };
}

const formatValue = (v) => (Array.isArray(v) ? `[${v.join(",")}]` : typeof v === "number" ? formatNumber(v) : String(v));
const formatValues = (values) => Object.entries(values).map(([k, v]) => `${k}=${formatValue(v)}`).join(", ");

/** Where an adaptive search stopped a member (ASHA), or the copies its weights came through (PBT). */
function searchNote(entry, sweep) {
  if (entry.stop_reason) return `${entry.stop_reason} (epoch ${entry.stopped_early_at})`;
  const history = sweep.search_state?.pbt?.history?.[entry.job_id] ?? [];
  const rank = Object.fromEntries(sweep.leaderboard.map((e) => [e.job_id, e.rank]));
  return history.filter((event) => event.source)
    .map((event) => `epoch ${event.epoch}: copied #${rank[event.source]}, ${formatValues(event.values)}`).join("; ");
}

function leaderboardRow(entry, sweep) {
  const params = formatValues(entry.hyperparameters);
  return h("tr", { "data-job-id": entry.job_id },
    h("td", { class: "num" }, String(entry.rank)),
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(entry.job_id)}` }, params)),
    h("td", {}, statusBadge(entry.status)),
    h("td", { class: "num" }, formatNumber(entry.loss)),
    h("td", { class: "num" }, formatNumber(entry.val_loss)),
    h("td", { class: "num" }, formatNumber(entry.val_accuracy ?? entry.accuracy)),
    h("td", { class: "search-note" }, searchNote(entry, sweep)));
}

/** A sweep's page: status, how the worker ran it, the leaderboard, and a link comparing its best members. */
export async function showSweep(root, signal, id) {
  const title = h("h1");
  const summary = h("p", { class: "note", role: "status" });
  const compare = h("a", { class: "button" }, "Compare the best members");
  const message = h("p", { class: "message", role: "status" });
  const remove = h("button", { type: "button", class: "danger", onclick: async () => {
    if (!confirm(`Delete sweep ${title.textContent}? Every member goes with it, running ones too; this cannot be undone.`)) return;
    try {
      await request(`/v1/sweeps/${encodeURIComponent(id)}`, { method: "DELETE", signal });
      location.hash = "#/";
    } catch (err) {
      message.textContent = err.message;
      message.classList.add("error");
    }
  } }, "Delete sweep");
  const tbody = h("tbody");
  root.replaceChildren(h("section", { class: "sweep" },
    h("p", {}, h("a", { href: "#/" }, "← All jobs")), title, summary, h("p", { class: "actions" }, compare, remove), message,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Rank"), h("th", { scope: "col" }, "Member"),
        h("th", { scope: "col" }, "Status"), h("th", { scope: "col", class: "num" }, "Loss"),
        h("th", { scope: "col", class: "num" }, "Val. loss"), h("th", { scope: "col", class: "num" }, "Accuracy"),
        h("th", { scope: "col" }, "Rung stop / PBT lineage"))),
      tbody))));
  while (!signal.aborted) {
    const sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(id)}`, { signal });
    title.replaceChildren(sweep.name || sweep.id, " ", statusBadge(sweep.status));
    summary.textContent = `${membersDone(sweep)} members done, ranked by ${sweep.ranked_by}. ${sweep.execution ?? "Waiting for a worker."}`;
    const best = sweep.leaderboard.slice(0, COMPARE_AT_MOST).map((entry) => encodeURIComponent(entry.job_id));
    compare.href = `#/compare/${best.join(",")}`;
    tbody.replaceChildren(...sweep.leaderboard.map((entry) => leaderboardRow(entry, sweep)));
    if (FINAL.has(sweep.status)) return;
    await sleep(POLL_MS, signal);
  }
}
