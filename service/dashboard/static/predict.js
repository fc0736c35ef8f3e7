// The prediction form of a succeeded job: JSON rows in, a table of answers out.

import { postJSON } from "./api.js";
import { formatNumber, h } from "./dom.js";

/** How many numbers one input row holds, read from the spec, for the example the form starts with. */
function rowWidth(model) {
  if (model.kind === "cnn") return model.in_channels * model.input_size[0] * model.input_size[1];
  return model.in_features;
}

function formatAnswer(value) {
  return Array.isArray(value) ? `[${value.map(formatAnswer).join(", ")}]` : typeof value === "number" ? formatNumber(value) : String(value);
}

function answerTable(inputs, answer) {
  const probabilities = answer.probabilities;
  return h("table", { class: "answers" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Input"), h("th", { scope: "col" }, "Prediction"),
      probabilities && h("th", { scope: "col" }, "Probabilities"))),
    h("tbody", {}, answer.predictions.map((prediction, i) => h("tr", {},
      h("td", {}, formatAnswer(inputs[i])),
      h("td", { class: "prediction" }, formatAnswer(prediction)),
      probabilities && h("td", {}, formatAnswer(probabilities[i]))))));
}

export function predictForm(job, signal) {
  const id = `inputs-${job.id}`;
  const width = rowWidth(job.spec.model);
  const example = JSON.stringify([Array(width).fill(0)]);
  const inputs = h("textarea", { id, name: "inputs", rows: 3, spellcheck: "false", "aria-describedby": `${id}-help` });
  inputs.value = width <= 64 ? example : "";
  const output = h("output", { for: id, "aria-live": "polite" });

  async function submit(event) {
    event.preventDefault();
    let rows;
    try {
      rows = JSON.parse(inputs.value);
      if (!Array.isArray(rows)) throw new Error("a list of rows");
    } catch {
      output.replaceChildren(h("p", { class: "error" }, "Inputs must be JSON: a list of rows, e.g. [[1.5], [2.0]]."));
      return;
    }
    output.replaceChildren(h("p", { class: "note" }, "Predicting…"));
    try {
      output.replaceChildren(answerTable(rows, await postJSON(`/v1/jobs/${encodeURIComponent(job.id)}/predict`, { inputs: rows }, { signal })));
    } catch (err) {
      output.replaceChildren(h("p", { class: "error" }, err.message));
    }
  }

  return h("form", { class: "predict", onsubmit: submit },
    h("label", { for: id }, "Inputs"),
    inputs,
    h("p", { id: `${id}-help`, class: "note" }, `JSON: a list of rows, ${width} number${width === 1 ? "" : "s"} each.`),
    h("button", { type: "submit" }, "Predict"),
    output);
}
