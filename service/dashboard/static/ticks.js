// Axis ticks for any range: where they go and how they read. Pure functions (no uPlot, no page), so a test can
// call them over a table of ranges.

const STEPS = [1, 2, 5]; // of a power of ten: 2.5 would add a digit to every other label

/**
 * Every multiple of `m`·10^`e` in [min, max], each the double nearest its decimal (0.3, not 0.1 * 3 =
 * 0.30000000000000004): an integer divided by an exact power of ten.
 */
function multiples(min, max, m, e = 0) {
  const step = m * 10 ** e;
  const first = Math.ceil(min / step - 1e-9);
  const last = Math.floor(max / step + 1e-9);
  const at = (k) => (e < 0 ? (k * m) / 10 ** -e : k * m * 10 ** e);
  const values = [];
  for (let k = first; k <= last; k += 1) {
    const value = Math.abs(e) > 22 ? Number(at(k).toPrecision(15)) : at(k); // beyond 1e22, 10^e itself is rounded
    if (value !== values.at(-1)) values.push(value || 0); // || 0: -0 reads "0" too
  }
  return values;
}

/** Round-number ticks from coarse to fine: multiples of 1, 2 and 5 times a power of ten. */
function* linearSets(min, max, most) {
  const top = Math.ceil(Math.log10(max - min));
  for (let exponent = top; ; exponent -= 1) {
    for (const m of [...STEPS].reverse()) {
      const values = multiples(min, max, m, exponent);
      yield values;
      if (values.length > most) return;
    }
  }
}

/** Log ticks from coarse to fine: a power of ten every few decades, then 1, 2 and 5 in each, then round numbers. */
function* logSets(min, max, most) {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  const inside = (values) => values.filter((v) => v >= min && v <= max);
  const decades = (exponents) => inside(exponents.map((e) => Number((10 ** e).toPrecision(15))));
  for (let every = high - low; every > 1; every = Math.floor(every / 2)) {
    yield decades(multiples(low, high, every));
  }
  const all = multiples(low, high, 1);
  yield decades(all);
  yield inside(all.flatMap((e) => STEPS.map((m) => Number((m * 10 ** e).toPrecision(15)))));
  // within a decade, round numbers evenly spaced are nearly even on a log axis too; over more they bunch at the top
  if (max < 10 * min) yield* linearSets(min, max, most);
}

/**
 * Tick values for an axis from `min` to `max` that is `px` CSS pixels long: the most that keep `space` pixels
 * between neighbours, and never fewer than three (closer together when the axis is too short for three).
 */
export function ticks(min, max, { log = false, px = 300, space = 30 } = {}) {
  if (!(max > min) || (log && !(min > 0))) return Number.isFinite(min) ? [min] : [];
  const at = log ? Math.log10 : (v) => v;
  const scale = px / (at(max) - at(min));
  const roomy = (values) => values.every((v, i) => i === 0 || (at(v) - at(values[i - 1])) * scale >= space);
  const most = Math.max(3, Math.floor(px / space) + 1);
  let best = null;
  for (const values of (log ? logSets : linearSets)(min, max, most)) {
    if (values.length < 3) continue;
    if (!roomy(values)) return best ?? thinned(values, roomy);
    if (!best || values.length > best.length) best = values;
  }
  return best;
}

/** Every second, third, … value of a crowded set: the first that is roomy, else the sparsest with three left. */
function thinned(values, roomy) {
  let kept = values;
  for (let every = 2; Math.ceil(values.length / every) >= 3; every += 1) {
    kept = values.filter((_, i) => i % every === 0);
    if (roomy(kept)) break;
  }
  return kept;
}

/** The shortest text that reads back as the value: 0.25, 1500, 3.25e10, 2e-9 (exponents outside 0.001 to 99999). */
export function tickLabel(value) {
  if (value === null || value === undefined) return "";
  const size = Math.abs(value);
  const exponential = size !== 0 && (size < 1e-3 || size >= 1e5);
  let text = "0";
  for (let digits = 1; digits <= 17 && Number(text) !== value; digits += 1) {
    text = exponential ? value.toExponential(digits - 1) : value.toPrecision(digits);
  }
  return exponential ? text.replace("e+", "e") : String(Number(text));
}
