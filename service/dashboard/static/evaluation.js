// A finished job's evaluation: the measures per held-out split, the confusion matrix as a heat map, and for
// regression a predicted-vs-actual scatter of a sample of the split's rows.

import { formatNumber, h, svg } from "./dom.js";

const MEASURES = {
  regression: [["mse", "MSE"], ["rmse", "RMSE"], ["mae", "MAE"], ["r2", "R²"]],
  classification: [["accuracy", "accuracy"], ["log_loss", "log loss"], ["precision", "precision (macro)"],
    ["recall", "recall (macro)"], ["f1", "F1 (macro)"], ["roc_auc", "ROC AUC"]],
};

function measuresTable(evaluation, task) {
  const splits = Object.entries(evaluation).filter(([, measures]) => measures);
  const columns = MEASURES[task].filter(([key]) => splits.some(([, m]) => m[key] != null));
  return h("table", { class: "evaluation" },
    h("thead", {}, h("tr", {}, h("th", {}, "split"), h("th", {}, "rows"), columns.map(([, label]) => h("th", {}, label)))),
    h("tbody", {}, splits.map(([split, m]) => h("tr", {},
      h("th", {}, split), h("td", {}, String(m.rows)), columns.map(([key]) => h("td", {}, formatNumber(m[key])))))));
}

/** Rows: the true class; columns: the predicted one; each cell shaded by its share of its row. */
function confusionMatrix(split, matrix) {
  const header = h("tr", {}, h("th", {}, "true \\ predicted"), matrix.map((_, j) => h("th", {}, String(j))));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return h("tr", {}, h("th", {}, String(i)), row.map((count) => {
      const cell = h("td", { title: `true ${i}: ${count} of ${total}` }, String(count));
      // through the CSSOM: the page's Content-Security-Policy refuses style attributes
      cell.style.backgroundColor = `rgba(37, 99, 235, ${(0.85 * count / total).toFixed(3)})`;
      return cell;
    }));
  });
  return h("figure", { class: "confusion" }, h("table", {}, h("thead", {}, header), h("tbody", {}, rows)),
    h("figcaption", {}, `confusion matrix, ${split}`));
}

/** Predicted against actual, with the diagonal where a perfect model's points would lie. */
function scatter(split, sample) {
  const size = 240, pad = 28;
  const values = [...sample.actual, ...sample.predicted];
  const low = Math.min(...values), high = Math.max(...values);
  const span = high - low || 1;
  const at = (v) => pad + ((v - low) / span) * (size - 2 * pad);
  const plot = svg("svg", { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: "img",
    "aria-label": `predicted against actual, ${split}` });
  plot.append(svg("line", { x1: at(low), y1: size - at(low), x2: at(high), y2: size - at(high), stroke: "currentColor",
    "stroke-dasharray": "4 3", "stroke-opacity": 0.5 }));
  sample.actual.forEach((actual, i) => plot.append(svg("circle", {
    cx: at(actual).toFixed(1), cy: (size - at(sample.predicted[i])).toFixed(1), r: 3, fill: "#2563eb", "fill-opacity": 0.7,
  })));
  return h("figure", { class: "scatter" }, plot,
    h("figcaption", {}, `predicted (up) against actual (across), ${split}: ${sample.actual.length} rows`));
}

/** The evaluation section's contents; a note when the job held out no split. */
export function evaluationView(job) {
  const evaluation = job.evaluation;
  if (!evaluation) {
    const why = job.status === "succeeded" ? "This job held out no validation or test split." : "Shown once the job has succeeded.";
    return [h("p", { class: "note" }, why)];
  }
  const figures = [];
  for (const [split, measures] of Object.entries(evaluation)) {
    if (measures?.confusion_matrix) figures.push(confusionMatrix(split, measures.confusion_matrix));
    if (measures?.sample) figures.push(scatter(split, measures.sample));
  }
  return [measuresTable(evaluation, job.spec.task), h("div", { class: "evaluation-figures" }, figures)];
}
