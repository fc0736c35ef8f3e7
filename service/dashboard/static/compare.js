// Several jobs side by side (e.g. a sweep's members): a table of their hyperparameters and metrics, their curves on
// one chart, each growing while its job runs, and parallel coordinates across what differs between them.

import { ApiError, FINAL, getJSON, sleep } from "./api.js";
import { COLORS, Chart, joinCurves, logToggle } from "./charts.js";
import { h, jobTitle, statusBadge } from "./dom.js";
import { linkedViews } from "./parallel.js";
import { differing, flatten, formatValues, keptMetrics, metricColumns, paramChooser, paramColumns, varying } from "./params.js";

const POLL_MS = 2000;
const HISTORY_POINTS = 2000;
const CURVES = [["loss", "training loss"], ["val_loss", "validation loss"], ["accuracy", "accuracy"], ["val_accuracy", "validation accuracy"]];

/** A job and its points so far; `poll` fetches only the points after the last one it has. */
class Member {
  constructor(id) {
    this.id = id;
    this.job = null;
    this.points = [];
    this.since = 0;
    this.missing = false;
    this.values = ""; // a sweep member's hyperparameters
    this.flat = null;
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

  /** Its spec's hyperparameters by dotted path. */
  get params() {
    this.flat ??= flatten(this.job.spec); // a job's spec never changes
    return this.flat;
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
    const names = varying(sweep.leaderboard.map((entry) => entry.hyperparameters));
    for (const entry of sweep.leaderboard) {
      const values = Object.fromEntries(names.map((name) => [name, entry.hyperparameters[name]]));
      labels.set(entry.job_id, formatValues(values));
    }
  }
  return labels;
}

/** The table's columns: each job by name, its status and points, the hyperparameters that differ, its metrics. */
function columns(members, names, colorOf) {
  const job = { label: "Job", key: (m) => m.label,
    cell: (m) => [swatch(colorOf(m)), h("a", { href: `#/jobs/${encodeURIComponent(m.id)}` }, m.label)] };
  const status = { label: "Status", key: (m) => m.job.status, cell: (m) => statusBadge(m.job.status) };
  const points = { label: "Points", num: true, key: (m) => m.points.length, cell: (m) => h("span", { class: "points" }, String(m.points.length)) };
  return [job, status, points, ...paramColumns(members, (m) => m.params, names), ...metricColumns(members, (m) => keptMetrics(m.job))];
}

/** The metric the jobs are judged by: validation accuracy (else training) for classifiers, else validation loss. */
function objective(members) {
  const classifiers = members.every((m) => m.job.spec.task === "classification");
  const names = classifiers ? ["val_accuracy", "accuracy"] : ["val_loss", "loss"];
  return names.find((name) => members.some((m) => keptMetrics(m.job)[name] != null)) ?? names.at(-1);
}

export async function showCompare(root, signal, ids) {
  const members = [...new Set(ids)].map((id) => new Member(id));
  let metric = "loss";
  let chart = null;
  const chartBox = h("div", { class: "chart" });
  const tools = h("div", { class: "chart-tools" });
  const missing = h("p", { class: "note", hidden: true });
  const picker = h("select", { id: "compare-metric", onchange: () => { metric = picker.value; rebuild(); } },
    CURVES.map(([key, label]) => h("option", { value: key }, label)));
  const { table, parallel } = linkedViews({ className: "compared", rowId: (m) => m.id }, "Each line a job, colored "
    + "as its curve: its hyperparameters that differ, then the metric it is judged by. Hover or focus one to find its row.");
  const chooser = paramChooser(() => redraw());

  root.replaceChildren(h("article", { class: "compare" },
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← All jobs")),
    h("h1", {}, `Compare ${members.length} jobs`),
    missing,
    h("div", { class: "toolbar" }, chooser.element),
    table.element,
    h("div", { class: "toolbar" }, h("label", { for: "compare-metric" }, "Curve "), picker),
    h("figure", { class: "curve" }, chartBox, tools),
    parallel.element));
  signal.addEventListener("abort", () => {
    chart?.destroy();
    parallel.destroy();
  });

  const shown = () => members.filter((m) => !m.missing && m.job);
  const colorOf = (m) => COLORS[shown().indexOf(m) % COLORS.length];
  function rebuild() {
    chart?.destroy();
    const scale = metric.includes("accuracy") ? "accuracy" : "loss";
    chart = new Chart(chartBox, shown().map((m) => ({ label: m.label, color: colorOf(m), scale })),
      { log: chart?.log ?? true, lossLabel: CURVES.find(([key]) => key === metric)[1] });
    tools.replaceChildren(scale === "loss" ? logToggle(chart) : "");
    redraw();
  }
  function redraw() {
    const jobs = shown();
    chart.setData(joinCurves(jobs.map((m) => m.curve(metric))));
    const gone = members.filter((m) => m.missing).map((m) => m.id);
    missing.hidden = !gone.length;
    missing.textContent = `Not found: ${gone.join(", ")}.`;
    table.update(columns(jobs, chooser.names(jobs.map((m) => m.params)), colorOf), jobs);
    const judged = objective(jobs);
    parallel.update(differing(jobs.map((m) => m.params)), judged, jobs.map((m) => ({
      id: m.id, label: m.label, color: colorOf(m), href: `#/jobs/${encodeURIComponent(m.id)}`,
      params: m.params, metric: keptMetrics(m.job)[judged],
    })));
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
