// Webhook deliveries of a job, or of a sweep (its own, and its members' when its notify names them): each one's
// event, job, the receiver's last status code, attempts, time and error, refreshed while any is still pending.

import { FINAL, getJSON, sleep } from "./api.js";
import { formatNumber, formatTime, h, statusBadge } from "./dom.js";

const POLL_MS = 2000;
const HEADINGS = ["Event", "Job", "Delivery", "Status code", "Attempts", "Time", "Error"];
const NUMBERS = new Set(["Status code", "Attempts"]);

/** What the receiver last answered, and why the last attempt failed (none once a 2xx came). */
function lastAttempt(delivery) {
  const last = delivery.attempts.at(-1);
  return { code: last?.status_code ?? "–", error: last?.error ?? "" };
}

function row(delivery, jobId) {
  const { code, error } = lastAttempt(delivery);
  const tried = delivery.attempts.map((a) => `#${a.number} ${formatTime(a.started_at)}: ${a.status_code ?? a.error} (${formatNumber(a.seconds)} s)`);
  return h("tr", { "data-delivery-id": delivery.id },
    h("td", {}, delivery.event),
    h("td", {}, jobId ? h("a", { href: `#/jobs/${encodeURIComponent(jobId)}` }, jobId) : "the sweep"),
    h("td", {}, statusBadge(delivery.status)),
    h("td", { class: "num" }, String(code)),
    h("td", { class: "num", title: tried.join("\n") }, String(delivery.attempts.length)),
    h("td", { class: "created" }, formatTime(delivery.ended_at ?? delivery.created_at)),
    h("td", { class: "delivery-error" }, error));
}

/** A job's `notify`, or a sweep's (in its request). */
const notifyOf = (kind, subject) => (kind === "jobs" ? subject.notify : subject.request?.notify);

/** [delivery, job id or null] of a job, or of a sweep and (with `members`) each of its members, oldest first. */
async function deliveriesOf(kind, subject, signal) {
  const list = async (path, jobId) => (await getJSON(`${path}/deliveries`, { signal })).items.map((d) => [d, jobId]);
  if (kind === "jobs") return list(`/v1/jobs/${encodeURIComponent(subject.id)}`, subject.id);
  const members = notifyOf(kind, subject)?.members ? subject.leaderboard.map((entry) => entry.job_id) : [];
  const all = (await Promise.all([list(`/v1/sweeps/${encodeURIComponent(subject.id)}`, null),
    ...members.map((id) => list(`/v1/jobs/${encodeURIComponent(id)}`, id))])).flat();
  return all.sort(([a], [b]) => a.created_at.localeCompare(b.created_at));
}

/** The deliveries page of a job (`kind` "jobs") or a sweep ("sweeps"). */
export async function showDeliveries(root, signal, kind, id) {
  const path = `/v1/${kind}/${encodeURIComponent(id)}`;
  const title = h("h1", {}, "Webhook deliveries");
  const target = h("p", { class: "note" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty", hidden: true });
  root.replaceChildren(h("section", { class: "deliveries" },
    h("p", { class: "crumbs" }, h("a", { href: `#/${kind}/${encodeURIComponent(id)}` }, `← The ${kind === "jobs" ? "job" : "sweep"}`)),
    title, target,
    h("div", { class: "table-wrap" }, h("table", { class: "deliveries-table" },
      h("thead", {}, h("tr", {}, HEADINGS.map((name) => h("th", { scope: "col", class: NUMBERS.has(name) && "num" }, name)))),
      tbody)),
    empty));
  while (!signal.aborted) {
    const subject = await getJSON(path, { signal });
    const notify = notifyOf(kind, subject);
    title.replaceChildren(`Webhook deliveries of ${subject.name || subject.id}`);
    target.textContent = notify
      ? `To ${notify.url}, on ${notify.events.join(", ")}${notify.members ? "; each member's too" : ""}.`
      : "No webhook: this one was submitted without notify.";
    const found = await deliveriesOf(kind, subject, signal);
    tbody.replaceChildren(...found.map(([delivery, jobId]) => row(delivery, jobId)));
    empty.hidden = found.length > 0;
    empty.textContent = FINAL.has(subject.status) ? "Nothing was delivered." : "Nothing yet: events are told as they happen.";
    if (!notify) return;
    // ended, its end told (a delivery is made at the next webhook poll after the end) and no attempt to come
    const ownEnd = ([delivery, jobId]) => delivery.event === subject.status && (kind === "jobs" || jobId === null);
    const told = !notify.events.includes(subject.status) || found.some(ownEnd);
    if (FINAL.has(subject.status) && told && found.every(([delivery]) => delivery.status !== "pending")) return;
    await sleep(POLL_MS, signal);
  }
}
