// Parallel coordinates: a vertical axis per hyperparameter that differs between runs, then the metric they are
// judged by, and one line per run across them, so what the good runs share shows at a glance. Drawn as SVG here:
// uPlot plots series over one x axis, not this. Each line is a link to its job, reached with Tab.

import { h, svg } from "./dom.js";
import { formatValue } from "./params.js";
import { sortableTable } from "./table.js";
import { tickLabel, ticks } from "./ticks.js";

const HEIGHT = 280;
const TOP = 48; // room for two rows of axis names: close axes alternate rows, so long dotted names do not overlap
const ONE_ROW = 200; // axes at least this far apart have their names in one row
const BOTTOM = 12;
const SIDE = 80; // room for the first axis's tick labels on its left
const GAP = 130; // the least room between two axes; more axes than the box holds scroll inside it
const LONGEST = 14; // characters of a category's label; the whole one is its tooltip
const TICK_SPACE = 22;

const clipped = (text) => (text.length > LONGEST ? `${text.slice(0, LONGEST - 1)}…` : text);

/**
 * Where an axis puts values, from 0 (bottom) to 1 (top), and its labelled ticks. Numbers: a log scale when all
 * are positive and they span two decades or more (learning rates, losses), else linear. Anything else (text,
 * lists, none) is a category, in order, evenly spaced. An undefined value has no place: the line breaks there.
 */
export function axisScale(values) {
  const present = values.filter((v) => v !== undefined);
  if (present.length && present.every((v) => typeof v === "number" && Number.isFinite(v))) {
    const low = Math.min(...present);
    const high = Math.max(...present);
    const log = low > 0 && high >= 100 * low;
    const at = log ? Math.log10 : (v) => v;
    const span = at(high) - at(low);
    const position = (v) => (span > 0 ? (at(v) - at(low)) / span : 0.5);
    const marks = (px) => ticks(low, high, { log, px, space: TICK_SPACE }).map((v) => [position(v), tickLabel(v)]);
    return { log, position, marks };
  }
  const labels = [...new Set(present.map(formatValue))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const place = (i) => (labels.length > 1 ? i / (labels.length - 1) : 0.5);
  const marks = (px) => { // every label while they fit, else every second, third, ...
    const every = Math.ceil(labels.length / Math.max(2, Math.floor(px / TICK_SPACE) + 1));
    return labels.map((label, i) => [place(i), label]).filter((_, i) => i % every === 0);
  };
  return { log: false, position: (v) => place(labels.indexOf(formatValue(v))), marks };
}

/**
 * The figure; `update(params, metric, lines)` draws it: an axis per name in `params`, then the metric's; `lines`
 * are {id, label, color, href, params: {name: value}, metric: value}, a hyperparameter a run lacks being none.
 * Hovering or focusing a line calls `onHighlight(id)` (null when left); `highlight(id)` marks one.
 */
class ParallelCoordinates {
  constructor({ caption, onHighlight }) {
    this.onHighlight = onHighlight;
    this.axes = [];
    this.lines = [];
    this.drawn = "";
    this.highlighted = null;
    this.plot = svg("svg", { role: "group", "aria-label": caption });
    this.box = h("div", { class: "plot-wrap" }, this.plot);
    this.element = h("figure", { class: "parallel", hidden: true }, this.box, h("figcaption", {}, caption));
    this.resizer = new ResizeObserver(() => this.draw());
    this.resizer.observe(this.box);
  }

  update(params, metric, lines) {
    this.axes = [...params, `metrics.${metric}`]; // "metrics.": apart from a hyperparameter of the same name (loss: "mse")
    this.lines = lines.map(({ id, label, color, href, ...run }) => ({
      id, label, color, href, values: [...params.map((name) => run.params[name] ?? null), run.metric ?? undefined],
    }));
    this.draw();
  }

  /** Redrawn only when what it shows changes: a line keeps the keyboard's focus while the runs train. */
  draw() {
    const width = Math.max(this.box.clientWidth, 2 * SIDE + (this.axes.length - 1) * GAP);
    const key = JSON.stringify([width, this.axes, this.lines]);
    if (key === this.drawn) return;
    this.drawn = key;
    this.element.hidden = !this.axes.length || !this.lines.length;
    const focused = this.plot.contains(document.activeElement) ? document.activeElement.dataset.jobId : null;
    const xs = this.axes.map((_, i) => (this.axes.length > 1 ? SIDE + (i * (width - 2 * SIDE)) / (this.axes.length - 1) : width / 2));
    const scales = this.axes.map((_, i) => axisScale(this.lines.map((line) => line.values[i])));
    const y = (p) => TOP + (1 - p) * (HEIGHT - TOP - BOTTOM);
    const row = (i) => (i % 2 && xs[1] - xs[0] < ONE_ROW ? 30 : 14);
    this.plot.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    this.plot.setAttribute("width", width);
    this.plot.setAttribute("height", HEIGHT);
    this.plot.replaceChildren(
      svg("g", { class: "runs" }, this.lines.map((line) => this.run(line, xs, scales, y))),
      svg("g", { class: "axes", "aria-hidden": "true" }, this.axes.map((name, i) => axis(name, xs[i], row(i), scales[i], y))));
    this.highlight(this.highlighted);
    if (focused) this.plot.querySelector(`[data-job-id="${CSS.escape(focused)}"]`)?.focus();
  }

  /** One run's line: a link to its job, named by its values, with a wide invisible stroke that is easy to hover. */
  run(line, xs, scales, y) {
    const points = line.values.map((value, i) => (value === undefined ? null : [xs[i], y(scales[i].position(value))]));
    const path = points.map((point, i) => (point ? `${points[i - 1] ? "L" : "M"}${point[0].toFixed(1)},${point[1].toFixed(1)}` : ""))
      .join("");
    const values = this.axes.map((name, i) => `${name} ${line.values[i] === undefined ? "–" : formatValue(line.values[i])}`);
    const name = `${line.label}: ${values.join(", ")}`;
    const enter = () => this.onHighlight(line.id);
    const leave = () => this.onHighlight(null);
    return svg("a", {
      class: "run", href: line.href, "data-job-id": line.id, "aria-label": name, stroke: line.color, fill: line.color,
      onmouseenter: enter, onmouseleave: leave, onfocus: enter, onblur: leave,
    },
    svg("title", {}, name),
    svg("path", { class: "hit", d: path }),
    svg("path", { class: "line", d: path }),
    points.filter(Boolean).map(([cx, cy]) => svg("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: 3 })));
  }

  /** Marks the line of this id and fades the others (none when null). */
  highlight(id) {
    this.highlighted = id;
    this.plot.classList.toggle("has-highlight", id !== null);
    for (const run of this.plot.querySelectorAll(".run")) run.classList.toggle("highlight", run.dataset.jobId === id);
  }

  destroy() {
    this.resizer.disconnect();
  }
}

/** A table of runs (`sortableTable`'s options) and their parallel coordinates, each marking the run hovered in either. */
export function linkedViews(tableOptions, caption) {
  const highlight = (id) => {
    table.highlight(id);
    parallel.highlight(id);
  };
  const table = sortableTable({ ...tableOptions, onHighlight: highlight });
  const parallel = new ParallelCoordinates({ caption, onHighlight: highlight });
  return { table, parallel };
}

/** An axis: its name on top (at height `top`), its ticks' labels on its left. */
function axis(name, x, top, scale, y) {
  const marks = scale.marks(y(0) - y(1));
  return svg("g", { class: "axis" },
    svg("text", { class: "axis-name", x, y: top, "text-anchor": "middle" }, `${name}${scale.log ? " (log)" : ""}`),
    svg("line", { x1: x, y1: y(1), x2: x, y2: y(0) }),
    marks.map(([p, label]) => svg("g", { class: "tick" },
      svg("line", { x1: x - 4, y1: y(p), x2: x, y2: y(p) }),
      svg("text", { x: x - 7, y: y(p) + 4, "text-anchor": "end" }, svg("title", {}, label), clipped(label)))));
}
