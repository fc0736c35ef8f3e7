// Building the page: elements from data (text only, never HTML strings) and number and time formats.

/** An element with attributes (`on*` functions become listeners) and children (strings become text). */
export const h = (tag, attrs = {}, ...children) => filled(document.createElement(tag), attrs, children);

/** An SVG element, as `h` makes HTML ones. */
export const svg = (tag, attrs = {}, ...children) =>
  filled(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);

function filled(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string" && !(node instanceof SVGElement)) node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e5)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

export const formatTime = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

export function formatDuration(startIso, endIso) {
  if (!startIso) return "–";
  return formatSeconds(Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000));
}

export function formatSeconds(seconds) {
  if (seconds < 59.95) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(Math.round(seconds) / 60);
  return minutes < 60 ? `${minutes} min ${Math.round(seconds) % 60} s` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export const jobTitle = (job) => job.name || job.id;

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

export function progressBar(job) {
  const { epoch, epochs } = job.progress;
  return h("progress", { max: epochs, value: epoch, "aria-label": `${jobTitle(job)}: epoch ${epoch} of ${epochs}` });
}
