// One job: its live curve, details, spec, cancel, delete, downloads and a prediction form.

import { FINAL, download, followEvents, getJSON, postJSON, request } from "./api.js";
import { COLORS, Chart, logToggle } from "./charts.js";
import { formatDuration, formatNumber, formatTime, h, jobTitle, progressBar, statusBadge } from "./dom.js";
import { evaluationView } from "./evaluation.js";
import { Pace, paceText } from "./pace.js";
import { predictForm } from "./predict.js";

const HISTORY_POINTS = 5000;
const FIELDS = [["loss", "loss"], ["val_loss", "validation loss"], ["accuracy", "accuracy"], ["val_accuracy", "validation accuracy"]];

/** Which curves this job records: validation only with a validation split, accuracy only for classification. */
function curvesOf(spec) {
  const validation = (spec.data?.validation_fraction ?? 0) > 0;
  const classification = spec.task === "classification";
  return FIELDS.filter(([key]) => (!key.startsWith("val_") || validation) && (!key.includes("accuracy") || classification));
}

/** A chart for one of the spec's `metrics`: its training curve, and its validation curve with a validation split. */
class MetricCurves {
  constructor(container, spec, name) {
    const validation = (spec.data?.validation_fraction ?? 0) > 0;
    this.keys = validation ? [name, `val_${name}`] : [name];
    this.data = [[], ...this.keys.map(() => [])];
    const box = h("div", { class: "chart metric-chart" });
    container.append(h("figure", { class: "curve", "data-metric": name }, box, h("figcaption", {}, name)));
    this.chart = new Chart(box, this.keys.map((key) => ({
      label: key === name ? name : `validation ${name}`, color: COLORS[4], dash: key === name ? undefined : [6, 4],
      scale: "loss",
    })), { log: false, lossLabel: name });
  }

  add(point) {
    this.data[0].push(point.epoch);
    this.keys.forEach((key, i) => this.data[i + 1].push(point[key]));
  }
}

class Curves {
  constructor(container, spec, lrContainer, metricsContainer) {
    this.fields = curvesOf(spec);
    this.data = [[], ...this.fields.map(() => [])];
    this.chart = new Chart(container, this.fields.map(([key, label]) => ({
      label, color: COLORS[key.includes("accuracy") ? 2 : 0], dash: key.startsWith("val_") ? [6, 4] : undefined,
      scale: key.includes("accuracy") ? "accuracy" : "loss",
    })));
    // with a schedule, the rate each recorded epoch trained at, on a chart of its own (linear)
    this.lr = spec.optimizer?.schedule ? [[], []] : null;
    this.lrChart = this.lr
      ? new Chart(lrContainer, [{ label: "learning rate", color: COLORS[3], scale: "loss" }], { log: false, lossLabel: "learning rate" })
      : null;
    // the spec's `metrics`, a chart each (linear: r2 may be negative, f1 lives in [0, 1])
    this.metrics = (spec.metrics ?? []).map((name) => new MetricCurves(metricsContainer, spec, name));
  }

  add(points) {
    for (const point of points) {
      this.data[0].push(point.epoch);
      this.fields.forEach(([key], i) => this.data[i + 1].push(point[key]));
      if (this.lr) { this.lr[0].push(point.epoch); this.lr[1].push(point.lr); }
      for (const metric of this.metrics) metric.add(point);
    }
    this.chart.setData(this.data);
    this.lrChart?.setData(this.lr);
    for (const metric of this.metrics) metric.chart.setData(metric.data);
  }

  destroy() {
    this.chart.destroy();
    this.lrChart?.destroy();
    for (const metric of this.metrics) metric.chart.destroy();
  }

  get length() {
    return this.data[0].length;
  }
}

/** The spec as indented JSON: a list of plain values on one line, and long lists (inline data) cut short. */
function formatSpec(spec) {
  const cut = (_key, value) => (Array.isArray(value) && value.length > 20 ? [...value.slice(0, 3), `… ${value.length - 3} more`] : value);
  return JSON.stringify(spec, cut, 2).replace(/\[\s+([^[\]{}]*?)\s+\]/g, (_m, items) => `[${items.split(/,\s+/).join(", ")}]`);
}

function details(job) {
  const rows = [
    ["Id", job.id], ["Status", job.status], ["Device", job.device ?? "–"], ["Execution", job.execution ?? "–"],
    ["Attempt", `${job.attempt} of ${job.max_attempts}`], ["Created", formatTime(job.created_at)],
    ["Started", formatTime(job.started_at)], ["Finished", formatTime(job.finished_at)],
    ["Training time", formatDuration(job.started_at, job.finished_at)],
  ];
  // early stopping: where patience ran out, and the epoch whose weights the job kept
  if (job.stopped_early_at != null) rows.push(["Stopped early at", `epoch ${job.stopped_early_at}`]);
  if (job.best_epoch != null) rows.push(["Weights kept", `epoch ${job.best_epoch} (best)`]);
  // why it stopped there: an adaptive search, or a time limit (max_seconds)
  if (job.stop_reason) rows.push(["Stop reason", job.stop_reason]);
  return h("dl", { class: "details" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function summary(job, latest, pace) {
  const { epoch, epochs } = job.progress;
  const parts = [`epoch ${epoch} / ${epochs}`];
  const metrics = (job.spec.metrics ?? []).flatMap((name) => [[name, name], [`val_${name}`, `validation ${name}`]]);
  for (const [key, label] of [...FIELDS, ...metrics]) if (latest?.[key] != null) parts.push(`${label} ${formatNumber(latest[key])}`);
  return [progressBar(job), h("span", {}, parts.join(" · ")), h("span", { class: "pace" }, paceText(job, pace))];
}

export async function showJob(root, signal, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let job = await getJSON(path, { signal });
  let latest = job.metrics;
  const pace = new Pace();

  const message = h("p", { class: "message", role: "status" });
  const fail = (err) => { message.textContent = err.message; message.classList.add("error"); };
  const say = (text) => { message.textContent = text; message.classList.remove("error"); };
  const act = (label, run) => h("button", { type: "button", onclick: () => run().catch(fail) }, label);
  const cancel = act("Cancel job", async () => { render(await postJSON(`${path}/cancel`, undefined, { signal })); say("Cancel requested."); });
  const weights = act("Download weights", () => download(`${path}/weights`, `${job.id}.safetensors`));
  const onnx = act("Download ONNX", () => download(`${path}/model.onnx`, `${job.id}.onnx`));
  const remove = act("Delete job", async () => {
    const what = job.status === "running" ? "It is stopped, and its" : "Its";
    if (!confirm(`Delete job ${jobTitle(job)}? ${what} curve, weights and checkpoints go with it; this cannot be undone.`)) return;
    await request(path, { method: "DELETE", signal });
    location.hash = "#/";
  });
  remove.classList.add("danger");

  const status = h("span"), progress = h("div", { class: "progress-line" }), info = h("div");
  const error = h("pre", { class: "job-error", hidden: true });
  // valid but likely not what was meant (the spec lints): shown above the curve, where the surprise would be
  const warnings = h("ul", { class: "warnings", "aria-label": "Spec warnings", hidden: true });
  const predict = h("div");
  const chartBox = h("div", { class: "chart" });
  const lrBox = h("div", { class: "chart lr-chart" });
  const metricsBox = h("div", { class: "metric-charts" });
  const evaluation = h("section", { class: "evaluation-section" }, h("h2", {}, "Evaluation"));
  const count = h("span", { class: "points" });
  const title = h("h1", {}, jobTitle(job));

  root.replaceChildren(h("article", { class: "job" },
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← All jobs")),
    h("div", { class: "title-line" }, title, status),
    progress,
    h("div", { class: "actions" }, cancel, weights, onnx, remove,
      job.notify && h("a", { class: "button", href: `#/jobs/${encodeURIComponent(job.id)}/deliveries` }, "Webhook deliveries")),
    message,
    warnings,
    h("figure", { class: "curve" }, chartBox, h("figcaption", {}, count)),
    h("figure", { class: "curve", hidden: !job.spec.optimizer?.schedule }, lrBox, h("figcaption", {}, "learning rate")),
    metricsBox,
    evaluation,
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, "Details"), info, error),
      h("section", {}, h("h2", {}, "Predict"), predict)),
    h("section", {}, h("h2", {}, "Spec"), h("pre", { class: "spec" }, formatSpec(job.spec)))));

  const curves = new Curves(chartBox, job.spec, lrBox, metricsBox);
  chartBox.after(h("div", { class: "chart-tools" }, logToggle(curves.chart)));
  signal.addEventListener("abort", () => curves.destroy());

  function render(next) {
    job = next;
    if (job.status === "running") pace.note(job.progress.epoch);
    else pace.clear(); // queued again (an interrupted attempt): its wait is no part of the speed
    status.replaceChildren(statusBadge(job.status), job.cancel_requested && !FINAL.has(job.status) ? " cancelling…" : "");
    progress.replaceChildren(...summary(job, latest, pace));
    info.replaceChildren(details(job));
    evaluation.replaceChildren(h("h2", {}, "Evaluation"), ...evaluationView(job));
    error.hidden = !job.error;
    warnings.hidden = !job.warnings?.length;
    warnings.replaceChildren(...(job.warnings ?? []).map((text) => h("li", {}, text)));
    error.textContent = job.error ?? "";
    cancel.disabled = FINAL.has(job.status) || job.cancel_requested;
    weights.disabled = onnx.disabled = job.status !== "succeeded";
    if (job.status !== "succeeded") {
      predict.replaceChildren(h("p", { class: "note" }, "Predictions open once the job has succeeded."));
    } else if (!predict.querySelector("form")) {
      predict.replaceChildren(predictForm(job, signal));
    }
  }

  let frame = null;
  // Points arrive up to a thousand at once: the text follows at most once per frame.
  const refresh = () => {
    frame ??= requestAnimationFrame(() => {
      frame = null;
      progress.replaceChildren(...summary(job, latest, pace));
      info.replaceChildren(details(job));
      count.textContent = `${curves.length} points`;
    });
  };
  render(job);
  // The history first, then the stream from the step after it: no point missed, none twice.
  const history = await getJSON(`${path}/metrics?max_points=${HISTORY_POINTS}`, { signal });
  curves.add(history.points);
  refresh();
  await followEvents(job.id, history.next_since_step, (event) => {
    if (event.event === "metric") {
      latest = event.data;
      curves.add([event.data]);
      job.progress.epoch = event.data.epoch;
      pace.note(event.data.epoch);
      refresh();
    } else if (event.event === "status") {
      render(event.data);
    }
  }, signal);
}
