// Several jobs' curves on one chart (e.g. a sweep's members), each growing while its job runs.

import { ApiError, FINAL, getJSON, sleep } from "./api.js";
import { COLORS, Chart, joinCurves, logToggle } from "./charts.js";
import { formatNumber, h, jobTitle, statusBadge } from "./dom.js";
import { formatValues, varying } from "./sweeps.js";

const POLL_MS = 2000;
const HISTORY_POINTS = 2000;
const METRICS = [["loss", "training loss"], ["val_loss", "validation loss"], ["accuracy", "accuracy"], ["val_accuracy", "validation accuracy"]];

/** A job and its points so far; `poll` fetches only the points after the last one it has. */
class Member {
  constructor(id) {
    this.id = id;
    this.job = null;
    this.points = [];
    this.since = 0;
    this.missing = false;
    this.values = ""; // a sweep member's hyperparameters
  }

  get label() {
    return [jobTitle(this.job), this.values].filter(Boolean).join(" · ");
  }

  async poll(signal) {
    const path = `/v1/jobs/${encodeURIComponent(this.id)}`;
    try {
      this.job = await getJSON(path, { signal });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      this.missing = true;
      return;
    }
    const query = this.since ? `since_step=${this.since}` : `max_points=${HISTORY_POINTS}`;
    const page = await getJSON(`${path}/metrics?${query}`, { signal });
    this.points.push(...page.points);
    this.since = page.next_since_step;
  }

  get done() {
    return this.missing || (this.job !== null && FINAL.has(this.job.status));
  }

  curve(metric) {
    return [this.points.map((p) => p.epoch), this.points.map((p) => p[metric])];
  }
}

function swatch(color) {
  const mark = h("span", { class: "swatch", "aria-hidden": "true" });
  mark.style.background = color; // through the CSSOM: the page's CSP refuses style attributes
  return mark;
}

/** Sweep members by the values that set them apart ("lr sweep #3 · lr=0.01"), not by their numbers alone. */
async function sweepLabels(members, signal) {
  const labels = new Map();
  for (const sweepId of new Set(members.map((m) => m.job?.sweep_id).filter(Boolean))) {
    let sweep;
    try {
      sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(sweepId)}`, { signal });
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) continue; // deleted meanwhile: its members keep their names
      throw err;
    }
    const names = varying(sweep.leaderboard);
    for (const entry of sweep.leaderboard) {
      const values = Object.fromEntries(names.map((name) => [name, entry.hyperparameters[name]]));
      labels.set(entry.job_id, formatValues(values));
    }
  }
  return labels;
}

function memberRow(member, color, metric) {
  if (member.missing) return h("tr", {}, h("td", {}, member.id), h("td", { colspan: 3 }, "not found"));
  const { job, points } = member;
  return h("tr", {},
    h("td", {}, swatch(color), h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, member.label)),
    h("td", {}, statusBadge(job.status)),
    h("td", { class: "num points" }, String(points.length)),
    h("td", { class: "num" }, formatNumber(points.at(-1)?.[metric])));
}

export async function showCompare(root, signal, ids) {
  const members = [...new Set(ids)].map((id) => new Member(id));
  let metric = "loss";
  let chart = null;
  const chartBox = h("div", { class: "chart" });
  const tools = h("div", { class: "chart-tools" });
  const tbody = h("tbody");
  const picker = h("select", { id: "compare-metric", onchange: () => { metric = picker.value; rebuild(); } },
    METRICS.map(([key, label]) => h("option", { value: key }, label)));

  root.replaceChildren(h("article", { class: "compare" },
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← All jobs")),
    h("h1", {}, `Compare ${members.length} jobs`),
    h("div", { class: "toolbar" }, h("label", { for: "compare-metric" }, "Curve "), picker),
    h("figure", { class: "curve" }, chartBox, tools),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Job"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Points"), h("th", { scope: "col", class: "num" }, "Last value"))),
      tbody))));
  signal.addEventListener("abort", () => chart?.destroy());

  const shown = () => members.filter((m) => !m.missing && m.job);
  function rebuild() {
    chart?.destroy();
    const scale = metric.includes("accuracy") ? "accuracy" : "loss";
    chart = new Chart(chartBox, shown().map((m, i) => ({ label: m.label, color: COLORS[i % COLORS.length], scale })),
      { log: chart?.log ?? true, lossLabel: METRICS.find(([key]) => key === metric)[1] });
    tools.replaceChildren(scale === "loss" ? logToggle(chart) : "");
    redraw();
  }
  function redraw() {
    chart.setData(joinCurves(shown().map((m) => m.curve(metric))));
    const colored = shown();
    tbody.replaceChildren(...members.map((m) => memberRow(m, COLORS[colored.indexOf(m) % COLORS.length], metric)));
  }

  // Polling, not a stream per job: a sweep's members would pass the browser's six connections per host.
  await Promise.all(members.map((m) => m.poll(signal)));
  const labels = await sweepLabels(members, signal);
  for (const m of members) m.values = labels.get(m.id) ?? "";
  rebuild();
  while (!signal.aborted && !members.every((m) => m.done)) {
    await sleep(POLL_MS, signal);
    if (signal.aborted) return;
    await Promise.all(members.filter((m) => !m.done).map((m) => m.poll(signal)));
    redraw();
  }
}
