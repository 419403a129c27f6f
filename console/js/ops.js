// Ops pages (the admin group): reconciliation reports, accounts (audit, statement, repair), balances,
// batches and reversals (the exact entries shown before submitting), predictions close and settle.
import { ApiError, get, newKey, post, request } from "./api.js";
import { seconds, timeChart } from "./chart.js";
import { badge, el, field, fmt, jsonBlock, notice, say, table } from "./ui.js";
import { balanceChart, entryColumns, statementForm, unavailable } from "./user.js";

const BATCH_TYPES = ["grant", "payout", "refund", "adjustment"];
const SETTLEMENT_POLL_MS = 1000;
const ID = /^[A-Za-z0-9_.:@-]{1,128}$/;
const enc = encodeURIComponent;
const STATEMENT_DAYS = 365; // a statement spans at most 366 days (statement_too_large beyond)

/** The last year up to a minute from now: the range the account page and the reversal lookup read. */
function lastYear() {
  const now = Date.now();
  return { from: new Date(now - STATEMENT_DAYS * 86400000).toISOString(), to: new Date(now + 60000).toISOString() };
}

// ------------------------------------------------------------------ reports
export async function reportsPage(view, ctx) {
  view.append(el("h1", {}, "Reconciliation"));
  if (ctx.config.dev_reconcile) {
    const button = el("button", { type: "button", id: "run-reconcile" }, "Run a reconciliation now");
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "Running…";
      try {
        const response = await fetch("/console/dev/reconcile", { method: "POST" });
        const report = await response.json();
        if (!response.ok) throw new Error(report.detail || `HTTP ${response.status}`);
        say(`Run ${report.run_id}: ${report.healthy ? "healthy" : "findings"}`);
        ctx.rerender();
      } catch (error) {
        button.disabled = false;
        button.textContent = "Run a reconciliation now";
        view.prepend(notice("bad", `The run failed: ${error.message}`));
      }
    });
    view.append(el("p", {}, button, el("span", { class: "muted" }, " (local stack only: in AWS the schedule runs it)")));
  }
  let latest = null;
  try {
    latest = await get("/v1/admin/reports/latest");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404 && !error.routeMissing) view.append(notice("warn", "No reconciliation has run yet."));
    else view.append(unavailable(error, "The latest report"));
  }
  if (latest) view.append(latestCard(latest));

  let past = [];
  try {
    past = (await get("/v1/admin/reports", { query: { limit: 30 } })).reports;
  } catch (error) {
    view.append(unavailable(error, "The list of past runs"));
  }
  if (past.length) {
    const runs = [...past].reverse();
    const times = runs.map((r) => seconds(r.started_at));
    view.append(
      timeChart("Runs over time", times, [
        { label: "entries checked", values: runs.map((r) => r.entries_checked) },
        { label: "tokens outstanding", values: runs.map((r) => r.tokens_outstanding) },
        { label: "findings", values: runs.map((r) => r.findings), scale: "findings", axisLabel: "findings" },
      ], { description: `(last ${runs.length} runs)` }),
      table("Past runs, newest first", [
        { label: "Started", value: (r) => fmt.when(r.started_at) },
        { label: "Health", value: (r) => (r.healthy ? badge("ok", "healthy") : badge("bad", "findings")) },
        { label: "Accounts", value: (r) => fmt.int(r.accounts_checked), num: true },
        { label: "Entries", value: (r) => fmt.int(r.entries_checked), num: true },
        { label: "Tokens outstanding", value: (r) => fmt.int(r.tokens_outstanding), num: true },
        { label: "Findings", value: (r) => fmt.int(r.findings), num: true },
        { label: "Run", value: (r) => el("code", {}, r.run_id), narrow: true },
      ], past, { id: "runs" }),
    );
  }
  if (latest) view.append(findingsTable(latest));
}

function latestCard(report) {
  return el("section", { class: "card", id: "latest", "aria-labelledby": "latest-h" },
    el("h2", { id: "latest-h" }, "Latest run ", report.healthy ? badge("ok", "healthy") : badge("bad", "findings")),
    el("div", { class: "grid" },
      stat("Accounts checked", report.accounts_checked),
      stat("Entries checked", report.entries_checked),
      stat("Tokens outstanding", report.tokens_outstanding),
      stat("Findings", (report.inconsistencies || []).length),
      stat("Unrecovered chargebacks", report.unrecovered_chargebacks)),
    el("p", { class: "muted" }, `Run ${report.run_id}, ${fmt.when(report.started_at)} → ${fmt.when(report.finished_at)}`));
}

function stat(label, value) {
  return el("div", {}, el("div", { class: "muted" }, label), el("div", { class: "big", style: null }, fmt.int(value)));
}

function findingsTable(report) {
  const findings = report.inconsistencies || [];
  return table("Findings of the latest run (select an account to audit or repair it)", [
    { label: "Account", value: (f) => el("a", { href: `#/ops/accounts/${enc(f.user_id)}` }, f.user_id) },
    { label: "Kind", value: (f) => f.kind },
    { label: "Detail", value: (f) => f.detail },
  ], findings, { empty: "No findings: every account's chain and stored balance agree.", id: "findings" });
}

// ------------------------------------------------------------------ accounts
export async function accountPage(view, ctx, userId) {
  view.append(el("h1", {}, "Accounts"));
  const input = el("input", { name: "user_id", value: userId || "", required: true, pattern: ID.source.slice(1, -1), autocomplete: "off" });
  const form = el("form", { class: "inline card", role: "search", "aria-label": "Look up an account" }, field("User id", input), el("button", { type: "submit" }, "Look up"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.go(`#/ops/accounts/${enc(input.value.trim())}`);
  });
  view.append(form);
  if (!userId) return;

  const [balances, audit] = await Promise.allSettled([
    get("/v1/admin/balances", { query: { user_ids: userId } }),
    get(`/v1/admin/accounts/${enc(userId)}/audit`),
  ]);
  const summary = el("section", { class: "card", id: "account", "aria-labelledby": "acct-h" }, el("h2", { id: "acct-h" }, userId));
  view.append(summary);
  if (balances.status === "fulfilled") {
    const b = balances.value.balances[0] || { balance: 0, version: 0 };
    summary.append(el("p", {}, "Balance ", el("strong", { id: "account-balance" }, fmt.int(b.balance)), ` tokens · version ${b.version}`));
  } else summary.append(unavailable(balances.reason, "The balance"));
  if (audit.status === "fulfilled") {
    summary.append(auditBlock(audit.value));
    if (!audit.value.consistent) summary.append(repairForm(userId, ctx));
  } else summary.append(unavailable(audit.reason, "The audit"));

  const statementBox = el("section", { class: "card", "aria-labelledby": "acct-stmt-h" }, el("h2", { id: "acct-stmt-h" }, "Entries and balance over the last year"));
  view.append(statementBox);
  try {
    const statement = await get(`/v1/admin/accounts/${enc(userId)}/statement`, { query: lastYear() });
    const entries = statement.entries || [];
    statementBox.append(balanceChart(`${userId}: balance over time`, entries),
      table("Entries, oldest first", [...entryColumns(), { label: "", value: (e) => el("a", { href: `#/ops/reversal?user_id=${enc(userId)}&entry_id=${enc(e.entry_id)}` }, "Reverse…") }], entries, { id: "account-entries" }));
  } catch (error) {
    statementBox.append(unavailable(error, "The account's statement"));
  }
  statementBox.append(statementForm(`/v1/admin/accounts/${enc(userId)}/statement`, userId));
}

function auditBlock(audit) {
  return el("div", { id: "audit" },
    el("p", {}, audit.consistent ? badge("ok", "consistent") : badge("bad", "inconsistent"),
      ` stored ${fmt.int(audit.stored_balance)}, computed from the chain ${fmt.int(audit.computed_balance)}, ${fmt.int(audit.entries_checked)} entries checked`),
    audit.inconsistencies.length ? table("What the audit found", [
      { label: "Kind", value: (i) => i.kind },
      { label: "Detail", value: (i) => i.detail },
    ], audit.inconsistencies) : null);
}

/** Repair: a reason, then an explicit confirmation step, then the request. */
function repairForm(userId, ctx) {
  const reason = el("input", { name: "reason", required: true, minlength: 3, maxlength: 500, placeholder: "why (kept in the audit record)" });
  const confirm = el("input", { type: "checkbox", name: "confirm", required: true });
  const out = el("div", { "aria-live": "polite" });
  const submit = el("button", { type: "submit", class: "danger", id: "repair" }, "Repair the stored balance");
  const form = el("form", { class: "card", "aria-label": "Repair" },
    el("h3", {}, "Repair"),
    el("p", {}, "Rebuilds the stored balance from the entries. No entry is edited; an audit record names you and the reason."),
    el("div", { class: "row" }, field("Reason", reason),
      el("label", { class: "check" }, confirm, ` I have checked the findings and want to repair ${userId}`),
      submit), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!confirm.checked || reason.value.trim().length < 3) return;
    submit.disabled = true;
    try {
      const result = await post(`/v1/admin/accounts/${enc(userId)}/repair`, { reason: reason.value.trim() });
      out.replaceChildren(notice("ok", result.repaired ? `Repaired: balance ${fmt.int(result.before && result.before.balance)} → ${fmt.int(result.after && result.after.balance)}.` : "Nothing to repair."), jsonBlock(result));
      say("Account repaired");
      setTimeout(() => ctx.rerender(), 1500);
    } catch (error) {
      submit.disabled = false;
      out.replaceChildren(unavailable(error, "The repair"));
    }
  });
  return form;
}

// ------------------------------------------------------------------ balances of many users
export async function balancesPage(view, ctx) {
  view.append(el("h1", {}, "Balances"));
  const ids = el("textarea", { name: "user_ids", rows: 4, required: true }, ctx.query.get("ids") || "");
  const out = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "card" }, field("User ids (comma, space or one per line; at most 100)", ids), el("p", {}, el("button", { type: "submit" }, "Show balances")), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const list = [...new Set(ids.value.split(/[\s,]+/).filter(Boolean))];
    if (list.length > 100) {
      out.replaceChildren(notice("bad", `${list.length} ids: at most 100 at a time.`));
      return;
    }
    try {
      const result = await get("/v1/admin/balances", { query: { user_ids: list.join(",") } });
      out.replaceChildren(table(`Total ${fmt.int(result.total)} tokens across ${result.balances.length} accounts`, [
        { label: "User", value: (b) => el("a", { href: `#/ops/accounts/${enc(b.user_id)}` }, b.user_id) },
        { label: "Balance", value: (b) => fmt.int(b.balance), num: true },
        { label: "Version", value: (b) => b.version, num: true },
      ], result.balances, { id: "balances" }));
    } catch (error) {
      out.replaceChildren(unavailable(error, "Balances"));
    }
  });
  view.append(form);
}

// ------------------------------------------------------------------ batch
/** Lines "user_id, type, amount[, related_id]" to operations; errors name the line. */
export function parseOperations(text) {
  const operations = [];
  const errors = [];
  text.split("\n").map((l) => l.trim()).forEach((line, index) => {
    if (!line || line.startsWith("#")) return;
    const [userId, type, amount, relatedId] = line.split(",").map((p) => p.trim());
    const n = Number(amount);
    if (!ID.test(userId || "")) errors.push(`line ${index + 1}: bad user id`);
    else if (!BATCH_TYPES.includes(type)) errors.push(`line ${index + 1}: type must be one of ${BATCH_TYPES.join(", ")}`);
    else if (!/^-?\d+$/.test(amount || "") || !Number.isSafeInteger(n) || n === 0 || (n < 0 && type !== "adjustment")) errors.push(`line ${index + 1}: amount must be a whole number (negative only for an adjustment)`);
    else operations.push({ user_id: userId, type, amount: n, ...(relatedId ? { related_id: relatedId } : {}) });
  });
  return { operations, errors };
}

export async function batchPage(view) {
  view.append(el("h1", {}, "Batch"));
  const lines = el("textarea", { name: "operations", rows: 6, required: true, placeholder: "alice, grant, 100\nbob, payout, 40, p-worldcup-final" });
  const reason = el("input", { name: "reason", required: true, maxlength: 500 });
  const preview = el("div", { id: "batch-preview", "aria-live": "polite" });
  const form = el("form", { class: "card" },
    field("Operations: one per line, user_id, type, amount[, related_id]", lines, `Types: ${BATCH_TYPES.join(", ")}. All or nothing.`),
    field("Reason", reason), el("p", {}, el("button", { type: "submit" }, "Preview")), preview);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const { operations, errors } = parseOperations(lines.value);
    if (errors.length || !operations.length) {
      preview.replaceChildren(notice("bad", errors.length ? errors.join("; ") : "No operations."));
      return;
    }
    const body = { operations, reason: reason.value.trim() };
    const key = newKey("batch");
    preview.replaceChildren(
      table("These entries will be written, all or none", [
        { label: "#", value: (_, i) => i, num: true },
        { label: "User", value: (o) => o.user_id },
        { label: "Type", value: (o) => o.type },
        { label: "Amount", value: (o) => fmt.signed(o.amount), num: true, cls: (o) => (o.amount < 0 ? "neg" : "pos") },
        { label: "Related", value: (o) => o.related_id || "" },
      ].map((c) => ({ ...c, value: (o) => c.value(o, operations.indexOf(o)) })), operations, { id: "batch-ops" }),
      el("p", {}, `Reason: ${body.reason} · total ${fmt.signed(operations.reduce((s, o) => s + o.amount, 0))} tokens · Idempotency-Key ${key}`),
      el("details", {}, el("summary", {}, "The exact request"), jsonBlock({ method: "POST", path: "/v1/admin/batches", body })),
      submitButton("Submit the batch", "submit-batch", async (out) => {
        const result = await post("/v1/admin/batches", body, { key });
        out.replaceChildren(notice("ok", `Written: ${result.entries.length} entries.`), table("New balances", [
          { label: "User", value: ([u]) => u },
          { label: "Balance", value: ([, b]) => fmt.int(b), num: true },
        ], Object.entries(result.balances), { id: "batch-balances" }));
      }),
    );
  });
  view.append(form);
}

/** A submit button that runs `action(out)` once, shows failures, and keeps its idempotency key on a retry. */
function submitButton(label, id, action) {
  const out = el("div", { "aria-live": "polite" });
  const button = el("button", { type: "button", id, class: "danger" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren(el("p", { class: "muted" }, "Submitting…"));
    try {
      await action(out);
      button.hidden = true;
    } catch (error) {
      button.disabled = false;
      out.replaceChildren(unavailable(error, "The request"), error.problem ? jsonBlock(error.problem) : null);
    }
  });
  return el("div", {}, button, out);
}

// ------------------------------------------------------------------ reversal
export async function reversalPage(view, ctx) {
  view.append(el("h1", {}, "Reversal"));
  const entryId = el("input", { name: "entry_id", required: true, value: ctx.query.get("entry_id") || "", autocomplete: "off" });
  const userId = el("input", { name: "user_id", value: ctx.query.get("user_id") || "", autocomplete: "off" });
  const reason = el("input", { name: "reason", required: true, maxlength: 500 });
  const preview = el("div", { id: "reversal-preview", "aria-live": "polite" });
  const form = el("form", { class: "card" },
    el("div", { class: "row" }, field("Entry id", entryId), field("Its user (to show the entry)", userId), field("Reason", reason), el("button", { type: "submit" }, "Preview")), preview);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { reason: reason.value.trim() };
    const key = newKey("reversal");
    const parts = [];
    if (userId.value.trim()) {
      try {
        const statement = await get(`/v1/admin/accounts/${enc(userId.value.trim())}/statement`, { query: lastYear() });
        const original = (statement.entries || []).find((e) => e.entry_id === entryId.value.trim());
        if (original) {
          parts.push(table("The entry to reverse", entryColumns(), [original]),
            notice("warn", `A reversal entry of ${fmt.signed(-original.amount)} tokens for ${original.user_id} will be written (type reversal, reverses ${original.entry_id}).`));
        } else parts.push(notice("warn", `No entry ${entryId.value.trim()} in ${userId.value.trim()}'s statement.`));
      } catch (error) {
        parts.push(unavailable(error, "Looking up the entry"));
      }
    } else parts.push(notice("warn", "Name the entry's user to see the entry and the exact reversal before submitting."));
    parts.push(el("details", {}, el("summary", {}, "The exact request"), jsonBlock({ method: "POST", path: `/v1/admin/entries/${entryId.value.trim()}/reversal`, body })));
    parts.push(submitButton("Submit the reversal", "submit-reversal", async (out) => {
      const result = await post(`/v1/admin/entries/${enc(entryId.value.trim())}/reversal`, body, { key });
      out.replaceChildren(notice("ok", `Reversed: ${fmt.signed(result.entry.amount)} tokens, balance now ${fmt.int(result.balance)}.`), jsonBlock(result.entry));
    }));
    preview.replaceChildren(...parts);
  });
  view.append(form);
}

// ------------------------------------------------------------------ predictions
export async function predictionsPage(view, ctx) {
  view.append(el("h1", {}, "Predictions"));
  const pid = el("input", { name: "prediction_id", required: true, value: ctx.query.get("id") || "", autocomplete: "off" });
  const status = el("div", { id: "prediction-status", "aria-live": "polite" });
  const closeOut = el("div", { "aria-live": "polite" });
  const lookup = el("form", { class: "inline card", "aria-label": "Prediction" }, field("Prediction id", pid),
    el("button", { type: "submit", class: "secondary" }, "Show settlement"),
    el("button", { type: "button", id: "close-prediction", onclick: () => closePrediction(pid.value.trim(), closeOut) }, "Close to new commitments"));
  lookup.addEventListener("submit", (event) => {
    event.preventDefault();
    showSettlement(pid.value.trim(), status);
  });
  const outcome = el("select", { name: "outcome" }, el("option", { value: "resolved" }, "resolved: pay out"), el("option", { value: "cancelled" }, "cancelled: refund every commitment"));
  const payouts = el("textarea", { name: "payouts", rows: 4, placeholder: "alice, 240\nbob, 60" });
  const house = el("input", { name: "house_contribution", type: "number", min: 0, step: 1 });
  const reason = el("input", { name: "reason", required: true, maxlength: 500 });
  const preview = el("div", { id: "settlement-preview", "aria-live": "polite" });
  const settle = el("form", { class: "card", "aria-label": "Settle" }, el("h2", {}, "Settle"),
    el("div", { class: "row" }, field("Outcome", outcome), field("House contribution (optional)", house), field("Reason", reason)),
    field("Payouts (resolved): user_id, amount per line", payouts), el("p", {}, el("button", { type: "submit" }, "Preview")), preview);
  settle.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = pid.value.trim();
    if (!ID.test(id)) {
      preview.replaceChildren(notice("bad", "Enter the prediction id above first."));
      return;
    }
    const body = { reason: reason.value.trim(), outcome: outcome.value };
    const errors = [];
    if (outcome.value === "resolved") {
      body.payouts = [];
      payouts.value.split("\n").map((l) => l.trim()).filter(Boolean).forEach((line, i) => {
        const [user, amount] = line.split(",").map((p) => p.trim());
        if (!ID.test(user || "") || !/^\d+$/.test(amount || "") || Number(amount) < 1) errors.push(`line ${i + 1}: "user_id, positive amount"`);
        else body.payouts.push({ user_id: user, amount: Number(amount) });
      });
      if (house.value) body.house_contribution = Number(house.value);
    }
    if (errors.length) {
      preview.replaceChildren(notice("bad", errors.join("; ")));
      return;
    }
    const key = newKey("settle");
    preview.replaceChildren(
      outcome.value === "resolved"
        ? table(`Payout entries to write (total ${fmt.int(body.payouts.reduce((s, p) => s + p.amount, 0))})`, [
          { label: "User", value: (p) => p.user_id }, { label: "Payout", value: (p) => fmt.signed(p.amount), num: true }], body.payouts)
        : notice("warn", `Every commitment to ${id} will be refunded (net of reversals).`),
      el("details", {}, el("summary", {}, "The exact request"), jsonBlock({ method: "POST", path: `/v1/admin/predictions/${id}/settlement`, body })),
      submitButton("Close and settle", "submit-settlement", async (out) => {
        await request("POST", `/v1/admin/predictions/${enc(id)}/settlement`, { body, key });
        out.replaceChildren(notice("ok", "Settlement accepted; progress below."));
        showSettlement(id, status);
      }),
    );
  });
  view.append(lookup, closeOut, status, settle);
  if (pid.value) showSettlement(pid.value, status);
}

async function closePrediction(id, out) {
  if (!ID.test(id)) {
    out.replaceChildren(notice("bad", "Enter a prediction id."));
    return;
  }
  try {
    const result = await post(`/v1/admin/predictions/${enc(id)}/close`, {}, { key: newKey("close") });
    out.replaceChildren(notice("ok", `${id} closed at ${fmt.when(result.closed_at)}: new commitments are refused.`));
  } catch (error) {
    out.replaceChildren(unavailable(error, "Closing the prediction"));
  }
}

/** The settlement's progress, polled until it completes or fails. */
async function showSettlement(id, box) {
  if (!ID.test(id)) return;
  const token = Symbol(id);
  box.token = token;
  const tick = async () => {
    if (box.token !== token || !box.isConnected) return;
    try {
      const s = await get(`/v1/admin/predictions/${enc(id)}/settlement`);
      const total = s.payouts_total || 0;
      const paid = s.paid_total || 0;
      const kind = { completed: "ok", failed: "bad" }[s.status] || "warn";
      // Progress by chunks when the service reports them (a large settlement runs in chunks), else by tokens.
      const byChunks = typeof s.chunks_total === "number" && s.chunks_total > 0;
      const max = byChunks ? s.chunks_total : Math.max(total, 1);
      const value = s.status === "completed" ? max : byChunks ? s.chunks_done || 0 : paid;
      const chunks = byChunks ? ` · chunk ${fmt.int(s.chunks_done || 0)} of ${fmt.int(s.chunks_total)}` : "";
      box.replaceChildren(el("section", { class: "card", "aria-labelledby": "settle-h" },
        el("h2", { id: "settle-h" }, `Settlement of ${id} `, badge(kind, s.status)),
        el("label", {}, `Paid ${fmt.int(paid)} of ${fmt.int(total)} tokens · ${fmt.int(s.entries_written)} entries written${chunks}`,
          el("progress", { class: "progress", id: "settlement-progress", max, value })),
        el("details", {}, el("summary", {}, "Details"), jsonBlock(s))));
      if (s.status === "pending" || s.status === "running") setTimeout(tick, SETTLEMENT_POLL_MS);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && !error.routeMissing) box.replaceChildren(notice("warn", `${id} has no settlement yet.`));
      else box.replaceChildren(unavailable(error, "Settlement progress"));
    }
  };
  tick();
}
