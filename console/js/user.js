// User pages: balance (with its low-balance state and a chart), history, statements, Buy tokens.
import { ApiError, collect, get, newKey, post, request } from "./api.js";
import { seconds, timeChart } from "./chart.js";
import { badge, download, el, field, fmt, isoDate, notice, say, table, tableRow } from "./ui.js";

export const ENTRY_TYPES = ["purchase", "commitment", "payout", "refund", "grant", "adjustment", "reversal", "chargeback"];
const CHART_ENTRIES_MAX = 500;
const HISTORY_PAGE = 20;

export function unavailable(error, what) {
  if (error instanceof ApiError && error.routeMissing) {
    return notice("warn", `${what} is not available on this server yet (the API has no such route). The rest of the console works.`);
  }
  return notice("bad", `${what} failed: ${error.message}`, error.code ? ` (${error.code})` : "");
}

export function entryColumns({ withUser = false } = {}) {
  return [
    { label: "When", value: (e) => fmt.when(e.created_at) },
    withUser ? { label: "User", value: (e) => e.user_id } : null,
    { label: "#", value: (e) => e.seq, num: true, narrow: true },
    { label: "Type", value: (e) => e.type },
    { label: "Amount", value: (e) => fmt.signed(e.amount), num: true, cls: (e) => (e.amount < 0 ? "neg" : "pos") },
    { label: "Balance", value: (e) => fmt.int(e.balance_after), num: true },
    { label: "Counterparty", value: (e) => e.counterparty || "", narrow: true },
    { label: "Entry", value: (e) => el("code", {}, e.entry_id), narrow: true },
  ].filter(Boolean);
}

/** Balance over time from entries (any order): a step line of balance_after. */
export function balanceChart(title, entries) {
  const sorted = [...entries].sort((a, b) => a.seq - b.seq);
  const times = sorted.map((e) => seconds(e.created_at));
  const values = sorted.map((e) => e.balance_after);
  if (sorted.length) {
    times.push(Math.max(Date.now() / 1000, times[times.length - 1])); // the balance holds until now
    values.push(values[values.length - 1]);
  }
  return timeChart(title, times, [{ label: "balance", values, step: true }]);
}

// ------------------------------------------------------------------ balance (home)
export async function balancePage(view, ctx) {
  view.append(el("h1", {}, "Your tokens"));
  const low = ctx.config.low_balance_tokens || 0;
  let balance;
  try {
    balance = await get("/v1/balance", { query: low ? { required: low } : {} });
  } catch (error) {
    view.append(unavailable(error, "Reading your balance"));
    return;
  }
  const isLow = low > 0 && balance.sufficient === false;
  view.append(el("div", { class: "grid" },
    el("section", { class: "card", "aria-labelledby": "bal-h" },
      el("h2", { id: "bal-h" }, "Balance"),
      el("div", { class: "big", id: "balance", dataset: { balance: balance.balance } }, fmt.int(balance.balance), el("span", { class: "muted" }, " tokens")),
      isLow
        ? el("p", {}, badge("warn", "Low balance"), ` Below ${fmt.int(low)} tokens: `, el("a", { href: "#/buy" }, "buy tokens"), ".")
        : el("p", {}, badge("ok", "OK"), " ", el("span", { class: "muted" }, `Updated ${fmt.when(balance.updated_at)} · version ${balance.version}`)),
    ),
    el("section", { class: "card" },
      el("h2", {}, "Do more"),
      el("p", {}, el("a", { href: "#/buy" }, "Buy tokens")),
      el("p", {}, el("a", { href: "#/history" }, "History and statements")),
    ),
  ));
  if (isLow) view.querySelector(".card").classList.add("low");
  try {
    const entries = await collect("/v1/transactions", {}, CHART_ENTRIES_MAX);
    view.append(balanceChart("Balance over time", entries));
    if (entries.length === CHART_ENTRIES_MAX) view.append(el("p", { class: "muted" }, `The chart shows your latest ${CHART_ENTRIES_MAX} entries.`));
  } catch (error) {
    view.append(unavailable(error, "Reading your history"));
  }
}

// ------------------------------------------------------------------ history
export async function historyPage(view, ctx) {
  view.append(el("h1", {}, "History"));
  const type = el("select", { name: "type" }, el("option", { value: "" }, "all types"), ENTRY_TYPES.map((t) => el("option", { value: t, selected: ctx.query.get("type") === t }, t)));
  const text = el("input", { type: "search", name: "q", placeholder: "e.g. p-worldcup", value: ctx.query.get("q") || "" });
  const form = el("form", { class: "inline card", role: "search", "aria-label": "Filter history" },
    field("Type", type), field("Counterparty or prediction contains", text),
    el("button", { type: "submit" }, "Apply"),
    el("button", { type: "button", class: "secondary", id: "refresh", onclick: () => ctx.rerender() }, "Refresh"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (type.value) q.set("type", type.value);
    if (text.value.trim()) q.set("q", text.value.trim());
    ctx.go(`#/history${q.toString() ? `?${q}` : ""}`);
  });
  view.append(form);

  const columns = entryColumns();
  const needle = (ctx.query.get("q") || "").toLowerCase();
  const matches = (e) => !needle || `${e.counterparty || ""} ${e.related_id || ""} ${JSON.stringify(e.metadata || {})}`.toLowerCase().includes(needle);
  const tbody = el("tbody");
  const tableEl = el("table", { id: "history" }, el("caption", {}, "Entries, newest first, with the balance after each"),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: [c.num ? "num" : "", c.narrow ? "hide-narrow" : ""].join(" ").trim() || null }, c.label)))), tbody);
  const state = el("p", { class: "muted", id: "history-state", "aria-live": "polite" });
  const more = el("button", { type: "button", class: "secondary", id: "more" }, "Load more");
  const sentinel = el("div", { class: "sentinel" });
  view.append(el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "History" }, tableEl), state, more, sentinel);

  let cursor;
  let loading = false;
  let done = false;
  let shown = 0;
  async function loadPage() {
    if (loading || done) return;
    loading = true;
    more.disabled = true;
    state.textContent = "Loading…";
    try {
      const page = await get("/v1/transactions", { query: { limit: HISTORY_PAGE, cursor, type: ctx.query.get("type") } });
      const rows = page.items.filter(matches);
      rows.forEach((e) => tbody.append(tableRow(columns, e)));
      shown += rows.length;
      cursor = page.next_cursor;
      done = !cursor;
      state.textContent = done ? `${shown} entries, all loaded.` : `${shown} entries loaded; scroll for more.`;
    } catch (error) {
      state.replaceWith(unavailable(error, "Reading your history"));
      done = true;
    } finally {
      loading = false;
      more.disabled = done;
      more.hidden = done;
    }
    // The observer fires on changes only: while the end of the list is still in view, keep going.
    if (!done && sentinel.isConnected && sentinel.getBoundingClientRect().top < window.innerHeight) setTimeout(loadPage, 0);
  }
  more.addEventListener("click", loadPage);
  const observer = new IntersectionObserver((seen) => { if (seen.some((s) => s.isIntersecting)) loadPage(); });
  observer.observe(sentinel);
  ctx.cleanup(() => observer.disconnect());
  await loadPage();

  view.append(statementForm("/v1/statements", ctx.session.sub));
}

/** From/to dates and a format: fetches the statement and saves it (JSON or CSV). */
export function statementForm(path, who) {
  const today = new Date();
  const from = el("input", { type: "date", name: "from", value: isoDate(new Date(today.getTime() - 30 * 86400000)), required: true });
  const to = el("input", { type: "date", name: "to", value: isoDate(today), required: true });
  const format = el("select", { name: "format" }, el("option", { value: "json" }, "JSON"), el("option", { value: "csv" }, "CSV"));
  const out = el("div", { "aria-live": "polite", id: "stmt-out" });
  const form = el("form", { class: "inline", "aria-label": "Statement" }, field("From", from), field("To (inclusive)", to), field("Format", format), el("button", { type: "submit" }, "Download statement"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    out.replaceChildren(el("p", { class: "muted" }, "Preparing the statement…"));
    const start = `${from.value}T00:00:00Z`;
    const end = new Date(new Date(`${to.value}T00:00:00Z`).getTime() + 86400000).toISOString();
    const csv = format.value === "csv";
    try {
      const response = await request("GET", path, { query: { from: start, to: end }, accept: csv ? "text/csv" : "application/json" });
      const name = `statement-${who}-${from.value}-to-${to.value}.${csv ? "csv" : "json"}`;
      const text = csv ? response.body : JSON.stringify(response.body, null, 2);
      download(name, text, csv ? "text/csv" : "application/json");
      const summary = csv ? `${text.trim().split("\n").length - 1} entries` : `${response.body.entries.length} entries, opening ${fmt.int(response.body.opening_balance)}, closing ${fmt.int(response.body.closing_balance)}`;
      out.replaceChildren(notice("ok", `Saved ${name}: ${summary}.`));
    } catch (error) {
      out.replaceChildren(unavailable(error, "The statement"));
    }
  });
  return el("section", { class: "card", "aria-labelledby": "stmt-h" }, el("h2", { id: "stmt-h" }, "Statement"), form, out);
}

// ------------------------------------------------------------------ buy
export async function buyPage(view, ctx) {
  view.append(el("h1", {}, "Buy tokens"));
  const outcome = ctx.query.get("checkout");
  if (outcome === "success") {
    const line = el("span", {}, "Waiting for the payment to be confirmed…");
    view.append(notice("ok", "Thank you! ", line));
    watchBalance(line, Number(ctx.query.get("before") || "NaN"));
  } else if (outcome === "cancel") {
    view.append(notice("warn", "Checkout cancelled: nothing was charged."));
  }
  let packages;
  try {
    packages = (await get("/v1/packages")).packages;
  } catch (error) {
    view.append(unavailable(error, "The package catalog"));
    return;
  }
  const out = el("div", { "aria-live": "polite" });
  const grid = el("div", { class: "packages" }, packages.map((p) => el("section", { class: "card package", "aria-labelledby": `pkg-${p.package_id}` },
    el("h2", { id: `pkg-${p.package_id}` }, p.name),
    el("div", { class: "tokens" }, fmt.int(p.tokens), el("span", { class: "muted" }, " tokens")),
    el("p", {}, fmt.money(p.price)),
    el("button", { type: "button", dataset: { package: p.package_id }, onclick: (event) => checkout(event.currentTarget, p, out) }, `Buy ${p.name}`))));
  view.append(grid, out);
}

async function checkout(button, pkg, out) {
  button.disabled = true;
  out.replaceChildren(el("p", { class: "muted" }, `Opening checkout for ${pkg.name}…`));
  let before = "";
  try {
    before = String((await get("/v1/balance")).balance);
  } catch {
    /* the success page then just shows the balance */
  }
  const back = `${window.location.origin}${window.location.pathname}#/buy?checkout=`;
  try {
    const session = await post("/v1/checkout-sessions", { package_id: pkg.package_id, success_url: `${back}success&before=${before}`, cancel_url: `${back}cancel` }, { key: button.dataset.key || (button.dataset.key = newKey("checkout")) });
    out.replaceChildren(notice("ok", "Redirecting to checkout…"));
    window.location.assign(session.url);
  } catch (error) {
    button.disabled = false;
    out.replaceChildren(unavailable(error, "Checkout"));
  }
}

/** After checkout: poll the balance until it moves (Stripe's webhook credits it), for up to a minute. */
function watchBalance(line, before) {
  let tries = 0;
  const tick = async () => {
    tries += 1;
    try {
      const balance = await get("/v1/balance");
      if (Number.isNaN(before) || balance.balance !== before) {
        line.replaceChildren(`Your balance is now `, el("strong", { id: "new-balance" }, fmt.int(balance.balance)), " tokens.");
        say(`Balance: ${fmt.int(balance.balance)} tokens`);
        return;
      }
    } catch {
      /* keep trying */
    }
    if (tries < 60) setTimeout(tick, 1000);
    else line.textContent = "The payment is not confirmed yet; your balance updates when it is.";
  };
  tick();
}
