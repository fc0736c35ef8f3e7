// A table of runs sortable by any column (its header a button), redrawn as the runs change, with one row
// highlighted at a time: the one hovered or focused here, or its line in a figure beside the table.

import { h } from "./dom.js";

/** Ascending or descending by one column; rows without a value last either way, ties in the order given. */
function sorted(rows, column, descending) {
  if (!column) return rows;
  const given = new Map(rows.map((row, i) => [row, i]));
  const order = (a, b) => {
    const [x, y] = [column.key(a), column.key(b)];
    if (x === y) return given.get(a) - given.get(b);
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const by = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
    return descending ? -by : by;
  };
  return [...rows].sort(order);
}

const classes = (column) => [column.num && "num", column.param && "param", column.differs && "differs"]
  .filter(Boolean).join(" ") || null;

/**
 * The table; `update(columns, rows)` redraws it in the order the user picked by a header (at first the column
 * labelled `sortBy`, or the order given). A column: {label, key(row) to sort by (numbers as numbers, the rest as
 * text), cell(row) to draw, and the flags num, param (a hyperparameter) and differs (its values differ between the
 * rows)}. `rowId(row)` names a row (its `data-job-id`); `onHighlight(id or null)` hears a row hovered or focused,
 * and left.
 */
export function sortableTable({ className, rowId, onHighlight, sortBy = null }) {
  const head = h("tr");
  const tbody = h("tbody");
  let sort = { label: sortBy, descending: false };
  let drawn = { columns: [], rows: [] };
  let drawnHead = "";
  let highlighted = null;
  const pick = (label) => {
    sort = { label, descending: sort.label === label && !sort.descending };
    update(drawn.columns, drawn.rows);
    [...head.querySelectorAll("button")].find((button) => button.textContent === label)?.focus(); // its header was redrawn
  };
  function update(columns, rows) {
    drawn = { columns, rows };
    const column = columns.find((c) => c.label === sort.label);
    const headKey = JSON.stringify([columns.map(classes), columns.map((c) => c.label), column?.label, sort.descending]);
    if (headKey !== drawnHead) { // redrawn only when it changes: a header button keeps the focus while the runs train
      drawnHead = headKey;
      head.replaceChildren(...columns.map((c) => h("th", {
        scope: "col", class: classes(c), "aria-sort": c === column ? (sort.descending ? "descending" : "ascending") : null,
      }, h("button", { type: "button", class: "sort", onclick: () => pick(c.label) }, c.label))));
    }
    tbody.replaceChildren(...sorted(rows, column, sort.descending).map((row) => {
      const id = rowId(row);
      return h("tr", {
        "data-job-id": id, class: id === highlighted ? "highlight" : null,
        onmouseenter: () => onHighlight(id), onmouseleave: () => onHighlight(null),
        onfocusin: () => onHighlight(id), onfocusout: () => onHighlight(null),
      }, columns.map((c) => h("td", { class: classes(c) }, c.cell(row))));
    }));
  }
  /** Marks the row of this id (none when null). */
  function highlight(id) {
    highlighted = id;
    for (const tr of tbody.rows) tr.classList.toggle("highlight", tr.dataset.jobId === id);
  }
  const element = h("div", { class: "table-wrap" }, h("table", { class: className }, h("thead", {}, head), tbody));
  return { element, update, highlight };
}
