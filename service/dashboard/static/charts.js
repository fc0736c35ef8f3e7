// Curves drawn with uPlot (vendored; loaded before this module as window.uPlot).

import { formatNumber, h } from "./dom.js";

const uPlot = window.uPlot;
export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];

/**
 * A chart of curves against the epoch that can grow: `setData` any time, it redraws once per frame.
 *
 * `series`: [{label, color, scale: "loss" | "accuracy", dash}]. Loss spans decades as it falls, so its scale is
 * logarithmic unless `log` is false; accuracy is always linear from 0 to 1.
 */
export class Chart {
  constructor(container, series, { log = true, lossLabel = "loss" } = {}) {
    this.container = container;
    this.series = series;
    this.log = log;
    this.lossLabel = lossLabel;
    this.data = [[], ...series.map(() => [])];
    this.frame = null;
    this.build();
    this.resizer = new ResizeObserver(() => this.plot.setSize(this.size()));
    this.resizer.observe(container);
  }

  size() {
    const width = Math.max(this.container.clientWidth, 240);
    return { width, height: Math.round(Math.min(360, Math.max(220, width * 0.5))) };
  }

  axes() {
    const axis = { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" } };
    const axes = [{ ...axis, label: "epoch" }];
    if (this.series.some((s) => s.scale === "loss")) {
      const ticks = this.log ? { splits: logSplits } : {};
      axes.push({ ...axis, ...ticks, scale: "loss", label: this.lossLabel, size: 64, values: (_u, vs) => vs.map(formatTick) });
    }
    if (this.series.some((s) => s.scale === "accuracy")) {
      const side = axes.length > 1 ? 1 : 3; // on the right when the loss axis takes the left
      axes.push({ ...axis, scale: "accuracy", label: "accuracy", side, grid: { show: side === 3 } });
    }
    return axes;
  }

  build() {
    this.plot?.destroy();
    const options = {
      ...this.size(),
      scales: {
        x: { time: false },
        loss: this.log ? { distr: 3, log: 10, range: logRange } : {},
        accuracy: { range: [0, 1] },
      },
      axes: this.axes(),
      series: [
        { label: "epoch" },
        ...this.series.map(({ label, color, scale, dash }) => ({
          label, scale, dash, stroke: color, width: 2, spanGaps: true, points: { show: false },
          value: (_u, v) => formatNumber(v),
        })),
      ],
      cursor: { drag: { x: true, y: false } },
    };
    this.plot = new uPlot(options, this.view(), this.container);
  }

  /** The data as drawn: a value of 0 or less has no place on a log scale, so it is left out there. */
  view() {
    if (!this.log) return this.data;
    const [xs, ...columns] = this.data;
    return [xs, ...columns.map((ys, i) => (this.series[i].scale === "loss" ? ys.map((v) => (v > 0 ? v : null)) : ys))];
  }

  setData(data) {
    this.data = data;
    this.frame ??= requestAnimationFrame(() => {
      this.frame = null;
      this.plot.setData(this.view());
    });
  }

  setLog(log) {
    this.log = log;
    this.build();
  }

  destroy() {
    this.resizer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.plot.destroy();
  }
}

function formatTick(value) {
  if (value === null) return "";
  return value < 1e-3 || value >= 1e5 ? value.toExponential(0) : String(Number(value.toPrecision(2)));
}

/** The curve's own range with a little room; uPlot's rounds out to whole decades, which flattens a short curve. */
function logRange(_u, min, max) {
  if (!(min > 0)) return [0.1, 1];
  const low = Math.log10(min);
  const high = Math.log10(max);
  const pad = Math.max((high - low) * 0.05, 0.02);
  return [10 ** (low - pad), 10 ** (high + pad)];
}

/** Log ticks: several per decade over a short range, only some powers of ten over a long one. */
function logSplits(_u, _axis, min, max) {
  const span = Math.log10(max / min);
  const mantissas = span < 1 ? [1, 2, 3, 5, 7] : span <= 3 ? [1, 2, 5] : [1];
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const step = Math.max(1, Math.ceil((high - low) / 8));
  const splits = [];
  for (let exponent = low; exponent <= high; exponent += step) {
    for (const m of mantissas) {
      const value = m * 10 ** exponent;
      if (value >= min && value <= max) splits.push(value);
    }
  }
  return splits;
}

/** Several jobs' curves on one x axis: uPlot wants every series over the same xs, with gaps where a job has none. */
export const joinCurves = (curves) => (curves.length ? uPlot.join(curves) : [[]]);

/** A checkbox that switches a chart between log and linear loss. */
export function logToggle(chart) {
  const box = h("input", { type: "checkbox", checked: chart.log, onchange: () => chart.setLog(box.checked) });
  return h("label", { class: "toggle" }, box, " log scale");
}
