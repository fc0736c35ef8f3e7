// What runs were and what they reached, as a table's columns: hyperparameters by dotted path (optimizer.lr), which
// of them differ between the runs, how their values read, and the metrics of the weights each run kept.

import { formatNumber, h } from "./dom.js";

// a run's bookkeeping, not how it trained
const NOT_HYPERPARAMETERS = new Set(["name", "tags", "priority", "metrics_every"]);
// a curve point's place and the schedule's learning rate of the moment: not results
const NOT_METRICS = new Set(["step", "epoch", "lr"]);
export const METRICS = [["loss", "Loss"], ["val_loss", "Val. loss"], ["accuracy", "Accuracy"], ["val_accuracy", "Val. accuracy"]];

export const formatValue = (v) => (v === null || v === undefined ? "none"
  : Array.isArray(v) && v.every((item) => typeof item !== "object") ? `[${v.join(",")}]`
    : typeof v === "number" ? formatNumber(v) : typeof v === "object" ? JSON.stringify(v) : String(v));
export const formatValues = (values) => Object.entries(values).map(([k, v]) => `${k}=${formatValue(v)}`).join(", ");

/** A spec's hyperparameters by dotted path: {"optimizer.kind": "sgd", "optimizer.lr": 0.01, "model.hidden": [32]}. */
export function flatten(spec, prefix = "") {
  const values = {};
  for (const [key, value] of Object.entries(spec)) {
    if (!prefix && NOT_HYPERPARAMETERS.has(key)) continue;
    const path = `${prefix}${key}`;
    if (value !== null && typeof value === "object" && !Array.isArray(value)) Object.assign(values, flatten(value, `${path}.`));
    else values[path] = value;
  }
  return values;
}

/** Every name in these rows of values, in the order first seen. */
const paramNames = (rows) => [...new Set(rows.flatMap(Object.keys))];

/** Whether the rows' values of `name` differ (a value one row lacks is none). */
const differs = (rows, name) => new Set(rows.map((values) => JSON.stringify(values[name] ?? null))).size > 1;

/** The names whose values differ between these rows. */
export const differing = (rows) => paramNames(rows).filter((name) => differs(rows, name));

/** The names whose values differ between these rows (all of them when none do). */
export function varying(rows) {
  const names = differing(rows);
  return names.length ? names : paramNames(rows);
}

/** What sorts a value: numbers as numbers, the rest as they read, nothing last. */
const sortable = (v) => (typeof v === "number" ? v : v === null || v === undefined ? null : formatValue(v));

/** A column per name: `valuesOf(row)` gives a row's hyperparameters; a column whose values differ is marked. */
export function paramColumns(rows, valuesOf, names) {
  const all = rows.map(valuesOf);
  return names.map((name) => ({
    label: name, param: true, differs: differs(all, name),
    num: all.every((values) => typeof values[name] === "number"),
    key: (row) => sortable(valuesOf(row)[name]), cell: (row) => formatValue(valuesOf(row)[name]),
  }));
}

/** A column per metric any row has a number for: loss, val_loss, accuracy, val_accuracy, then the others by name. */
export function metricColumns(rows, metricsOf) {
  const all = rows.map(metricsOf);
  const known = new Map(METRICS);
  const others = paramNames(all).filter((name) => !known.has(name) && !NOT_METRICS.has(name)).sort();
  return [...known.keys(), ...others].filter((name) => all.some((metrics) => typeof metrics[name] === "number"))
    .map((name) => ({ label: known.get(name) ?? name, metric: name, num: true,
      key: (row) => metricsOf(row)[name] ?? null, cell: (row) => formatNumber(metricsOf(row)[name]) }));
}

/** The metrics of the weights a job kept: its best epoch's with early stopping, else its latest (as the API ranks). */
export const keptMetrics = (job) => job.best_metrics ?? job.metrics ?? {};

/**
 * A "show all" checkbox for a table of runs: by default only the hyperparameters that differ are columns.
 * `names(rows)` is the columns to show; the box hides itself when every hyperparameter differs.
 */
export function paramChooser(onchange) {
  const box = h("input", { type: "checkbox", onchange });
  const element = h("label", { class: "toggle", hidden: true }, box, " show all hyperparameters");
  const names = (rows) => {
    const shown = varying(rows);
    const all = paramNames(rows);
    element.hidden = shown.length === all.length;
    return box.checked ? all : shown;
  };
  return { element, names };
}
