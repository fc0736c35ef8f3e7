// Curves drawn with uPlot (vendored; loaded before this module as window.uPlot).

import { formatNumber, h } from "./dom.js";
import { tickLabel, ticks } from "./ticks.js";

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
    // a canvas says nothing to a screen reader: the axes' labels in words, as last drawn
    this.ticks = new Map();
    this.summary = h("p", { class: "visually-hidden axis-ticks" });
    container.append(this.summary);
    this.build();
    this.resizer = new ResizeObserver(() => this.plot.setSize(this.size()));
    this.resizer.observe(container);
  }

  size() {
    const width = Math.max(this.container.clientWidth, 240);
    return { width, height: Math.round(Math.min(360, Math.max(220, width * 0.5))) };
  }

  axes() {
    const axis = (label, log, space) => ({
      label, stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.2)" },
      ...tickOptions(log, space, (labels) => this.ticks.set(label, labels)),
    });
    const axes = [axis("epoch", false, X_SPACE)];
    if (this.series.some((s) => s.scale === "loss")) {
      axes.push({ ...axis(this.lossLabel, this.log, Y_SPACE), scale: "loss", size: axisSize });
    }
    if (this.series.some((s) => s.scale === "accuracy")) {
      const side = axes.length > 1 ? 1 : 3; // on the right when the loss axis takes the left
      axes.push({ ...axis("accuracy", false, Y_SPACE), scale: "accuracy", side, size: axisSize, grid: { show: side === 3 } });
    }
    return axes;
  }

  describe() {
    const scale = this.log ? " (log)" : "";
    this.summary.textContent = [...this.ticks].map(([label, labels]) =>
      `${label} axis${label === this.lossLabel ? scale : ""}: ${labels.join(", ")}`).join("; ");
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
      hooks: { draw: [() => this.describe()] },
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
    this.ticks.clear();
    this.build();
  }

  destroy() {
    this.resizer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.plot.destroy();
    this.summary.remove();
  }
}

// the least room between two ticks' centres, in CSS pixels: a label's height up the side, its width along the bottom
const Y_SPACE = 36;
const X_SPACE = 72;

/** An axis's ticks from ticks.js, every label drawn (uPlot's own filter keeps only log labels of 1, 2 and 5). */
function tickOptions(log, space, drawn) {
  return {
    space,
    splits: (u, index, min, max) => ticks(min, max, { log, px: axisLength(u, index), space }),
    filter: (_u, splits) => splits,
    values: (_u, splits) => {
      const labels = splits.map(tickLabel);
      drawn(labels);
      return labels;
    },
  };
}

/** How long an axis is drawn, in CSS pixels (uPlot's bbox is in device pixels). */
function axisLength(u, index) {
  const across = u.axes[index].side % 2 === 0;
  return (across ? u.bbox.width : u.bbox.height) / uPlot.pxRatio;
}

/** A side axis as wide as its longest label: 3.25e10 and -2.5e-7 need more room than 0.5. */
function axisSize(_u, values) {
  const longest = Math.max(3, ...(values ?? []).map((text) => String(text).length));
  return 16 + 7 * longest;
}

/** The curve's own range with a little room; uPlot's rounds out to whole decades, which flattens a short curve. */
function logRange(_u, min, max) {
  if (!(min > 0)) return [0.1, 1];
  const low = Math.log10(min);
  const high = Math.log10(max);
  const pad = Math.max((high - low) * 0.05, 0.02);
  return [10 ** (low - pad), 10 ** (high + pad)];
}

/** Several jobs' curves on one x axis: uPlot wants every series over the same xs, with gaps where a job has none. */
export const joinCurves = (curves) => (curves.length ? uPlot.join(curves) : [[]]);

/** A checkbox that switches a chart between log and linear loss. */
export function logToggle(chart) {
  const box = h("input", { type: "checkbox", checked: chart.log, onchange: () => chart.setLog(box.checked) });
  return h("label", { class: "toggle" }, box, " log scale");
}
