// How fast a job trains and when it should end: from the epochs this page saw arrive while it runs, from its
// start and finish once it has ended.

import { FINAL } from "./api.js";
import { formatSeconds } from "./dom.js";
import { tickLabel } from "./ticks.js";

// as the CLI's bar estimates: over the last half minute, so a slower or faster stretch shows soon
const WINDOW_MS = 30_000;

export class Pace {
  constructor() {
    this.seen = []; // [ms by this browser's clock, epoch]: never compared with the server's clock
  }

  note(epoch, now = performance.now()) {
    if (this.seen.at(-1)?.[1] === epoch) return;
    this.seen.push([now, epoch]);
    while (this.seen.length > 2 && now - this.seen[1][0] > WINDOW_MS) this.seen.shift();
  }

  clear() {
    this.seen = [];
  }

  /** Epochs a second over the window; null until a second of training has been seen. */
  rate() {
    const [first, last] = [this.seen[0], this.seen.at(-1)];
    if (!first || last[0] - first[0] < 1000 || last[1] <= first[1]) return null;
    return ((last[1] - first[1]) * 1000) / (last[0] - first[0]);
  }
}

const perSecond = (rate) => `${tickLabel(Number(rate.toPrecision(3)))} epochs/s`;

/** "120 epochs/s · ETA 2 min 5 s" while it runs; "took 40.2 s · 125 epochs/s" once it has ended. */
export function paceText(job, pace) {
  const { epoch, epochs } = job.progress;
  if (FINAL.has(job.status)) {
    if (!job.started_at || !job.finished_at) return "";
    const seconds = (new Date(job.finished_at) - new Date(job.started_at)) / 1000;
    return [`took ${formatSeconds(seconds)}`, seconds > 0 && epoch > 0 && perSecond(epoch / seconds)].filter(Boolean).join(" · ");
  }
  const rate = job.status === "running" ? pace.rate() : null;
  if (rate === null) return job.status === "running" ? "measuring speed…" : "";
  return `${perSecond(rate)} · ETA ${formatSeconds((epochs - epoch) / rate)}`;
}
