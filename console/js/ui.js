// Small DOM helpers: every text goes in through text nodes, never parsed as markup.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldSeq = 0;
/** A labelled form control; `control` is an element (input, select, textarea). */
export function field(label, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const parts = [label, control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(el("span", { id: hintId, class: "muted", style: null }, hint));
  }
  return el("label", { for: id }, ...parts);
}

export function notice(kind, ...children) {
  return el("div", { class: `notice ${kind}`, role: kind === "bad" ? "alert" : null }, ...children);
}

export function badge(kind, text) {
  return el("span", { class: `badge ${kind}` }, text);
}

export function say(message) {
  const status = document.getElementById("status");
  const line = el("div", {}, message);
  status.append(line);
  setTimeout(() => line.remove(), 5000);
}

export const fmt = {
  int: (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–"),
  signed: (n) => (n > 0 ? `+${n.toLocaleString("en-US")}` : n.toLocaleString("en-US")),
  when: (iso) => {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
  },
  money: (price) => {
    if (!price) return "";
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: price.currency.toUpperCase() })
        .format(price.amount / 100);
    } catch {
      return `${price.amount} ${price.currency}`;
    }
  },
};

/** A table: columns [{label, value(row), num?, cls?(row), narrow?}], rows, caption. */
export function table(caption, columns, rows, { empty = "Nothing to show.", id } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: [c.num ? "num" : "", c.narrow ? "hide-narrow" : ""].join(" ").trim() || null }, c.label)));
  const body = el("tbody", {}, rows.map((row) => tableRow(columns, row)));
  const t = el("table", { id }, el("caption", {}, caption), el("thead", {}, head), body);
  const wrap = el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, t);
  if (!rows.length) wrap.append(el("p", { class: "muted" }, empty));
  return wrap;
}

export function tableRow(columns, row) {
  return el("tr", {}, columns.map((c) => {
    const value = c.value(row);
    const classes = [c.num ? "num" : "", c.narrow ? "hide-narrow" : "", c.cls ? c.cls(row) : ""].join(" ").trim();
    return el("td", { class: classes || null }, value);
  }));
}

export function jsonBlock(value) {
  return el("pre", { class: "json", tabindex: "0" }, JSON.stringify(value, null, 2));
}

/** Save text as a file in the browser's downloads. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function isoDate(date) {
  return date.toISOString().slice(0, 10);
}
