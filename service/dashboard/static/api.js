// Talking to the /v1 API: the key kept in this browser, authenticated requests, the event stream, downloads.

const KEY_ITEM = "fitserve.apiKey";
export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const getKey = () => localStorage.getItem(KEY_ITEM);

export function setKey(key) {
  if (key) localStorage.setItem(KEY_ITEM, key);
  else localStorage.removeItem(KEY_ITEM);
}

function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

async function detailOf(response) {
  try {
    const { detail } = await response.json();
    if (typeof detail === "string") return detail;
    return detail.map((item) => `${item.loc.slice(1).join(".")}: ${item.msg}`).join("; ");
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

export async function request(path, { method = "GET", body, signal, headers = {} } = {}) {
  const init = { method, signal, headers: authHeaders(headers) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Unauthorized(await detailOf(response));
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return response;
}

export const getJSON = async (path, options) => (await request(path, options)).json();
export const postJSON = async (path, body, options = {}) =>
  (await request(path, { ...options, method: "POST", body })).json();

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

function parseEvent(block) {
  const event = { event: "message", id: null, data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: the server's keepalive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") event.data.push(value);
    else if (field === "event" || field === "id") event[field] = value;
  }
  return event.data.length ? { ...event, data: JSON.parse(event.data.join("\n")) } : null;
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
    }
  }
}

/**
 * Follow a job's Server-Sent Events until the job is final, resuming after `lastEventId` and after dropped connections.
 *
 * EventSource cannot send an Authorization header, and a key must never go into a URL, so the stream is read with
 * fetch and parsed here.
 */
export async function followEvents(jobId, lastEventId, onEvent, signal) {
  let last = lastEventId;
  let finished = false;
  for (let failures = 0; !finished && !signal.aborted;) {
    try {
      const headers = last ? { "Last-Event-ID": String(last) } : {};
      const response = await request(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { signal, headers });
      failures = 0;
      if (response.status === 204) return; // the server's word that this stream is over (as for EventSource)
      await readEvents(response.body, (event) => {
        if (event.id !== null) last = event.id;
        if (event.event === "status" && FINAL.has(event.data.status)) finished = true;
        onEvent(event);
      });
      if (!finished) await sleep(1000, signal); // closed early (a restart): reconnect, but not in a tight loop
    } catch (err) {
      if (signal.aborted || err instanceof Unauthorized || err instanceof ApiError) throw err;
      failures += 1;
      await sleep(Math.min(500 * 2 ** failures, 10_000), signal);
    }
  }
}

function filenameOf(response) {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
  return match ? match[1] : null;
}

/** Save an authenticated download: a plain link could not carry the key. */
export async function download(path, fallbackName) {
  const response = await request(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filenameOf(response) || fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  // the browser starts the download after this task; revoking at once could cancel it
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
