// The console's shell: configuration, sign-in, navigation and a hash router (#/path?query).
import { setApiBase } from "./api.js";
import { auth } from "./auth.js";
import * as ops from "./ops.js";
import { el, field, notice } from "./ui.js";
import * as user from "./user.js";

const USER_PAGES = [
  ["#/", "Balance", user.balancePage],
  ["#/history", "History", user.historyPage],
  ["#/buy", "Buy tokens", user.buyPage],
];
const OPS_PAGES = [
  ["#/ops/reports", "Reconciliation", ops.reportsPage],
  ["#/ops/accounts", "Accounts", ops.accountPage],
  ["#/ops/balances", "Balances", ops.balancesPage],
  ["#/ops/batch", "Batch", ops.batchPage],
  ["#/ops/reversal", "Reversal", ops.reversalPage],
  ["#/ops/predictions", "Predictions", ops.predictionsPage],
];

let config = { mode: "dev" };
let cleanups = [];
let generation = 0; // bumped per render; a stale render never marks the page ready
const main = () => document.getElementById("main");

async function loadConfig() {
  const response = await fetch("/console/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  return response.json();
}

function parseHash() {
  const hash = window.location.hash || "#/";
  const [path, query = ""] = hash.split("?");
  return { path: path === "#" ? "#/" : path, query: new URLSearchParams(query) };
}

function renderNav(session) {
  const nav = document.getElementById("nav");
  const { path } = parseHash();
  const link = ([href, label]) => el("a", { href, "aria-current": path === href || (href !== "#/" && path.startsWith(`${href}/`)) ? "page" : null }, label);
  nav.replaceChildren(...USER_PAGES.map(link));
  if (auth.isAdmin()) nav.append(el("span", { class: "sep", "aria-hidden": "true" }), ...OPS_PAGES.map(link));
  nav.hidden = false;
  document.getElementById("who").replaceChildren(
    el("span", {}, "Signed in as ", el("strong", { id: "signed-in-as" }, session.sub), auth.isAdmin() ? " (admin)" : ""),
    el("button", { type: "button", class: "secondary", onclick: () => auth.signOut() }, "Sign out"));
}

function signInScreen() {
  generation += 1;
  const view = main();
  view.replaceChildren(el("h1", {}, "Sign in"));
  if (config.mode === "cognito") {
    view.append(el("p", {}, "Sign in with your account; you will come back here."),
      el("button", { type: "button", id: "sign-in", onclick: () => auth.cognitoSignIn() }, "Sign in"));
    return;
  }
  const users = config.dev_users || [];
  const who = el("input", { name: "user", list: "dev-users", required: true, value: users[0] || "", autocomplete: "off", pattern: "[A-Za-z0-9_.@-]{1,128}" });
  const list = el("datalist", { id: "dev-users" }, users.map((u) => el("option", { value: u })));
  const admin = el("input", { type: "checkbox", name: "admin" });
  const out = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "card picker", id: "picker" },
    notice("warn", "Local stack: development tokens, signed with this machine's key. In AWS this is Cognito's sign-in."),
    field("User", who, "Any id; the demo data (make run SEED=1) has alice, bob and carol."), list,
    el("label", { class: "check" }, admin, " in the admin group (operator pages)"),
    el("p", {}, el("button", { type: "submit" }, "Sign in")), out);
  who.addEventListener("input", () => { if (who.value === "ops") admin.checked = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await auth.devSignIn(who.value.trim(), admin.checked);
      route();
    } catch (error) {
      out.replaceChildren(notice("bad", error.message));
    }
  });
  view.append(form);
  who.focus();
}

async function route() {
  cleanups.forEach((fn) => fn());
  cleanups = [];
  generation += 1;
  const mine = generation;
  const session = auth.session();
  if (!session) {
    document.getElementById("nav").hidden = true;
    document.getElementById("who").replaceChildren();
    signInScreen();
    return;
  }
  renderNav(session);
  const { path, query } = parseHash();
  // Each visit renders into its own container: a slow page that finishes after the user moved on
  // writes into a detached element, never into the page now shown.
  const view = el("div", { class: "view" });
  const holder = main();
  holder.replaceChildren(view);
  delete holder.dataset.ready;
  holder.setAttribute("aria-busy", "true");
  const ctx = {
    config,
    session,
    query,
    go: (hash) => { if (window.location.hash === hash) route(); else window.location.hash = hash; },
    rerender: () => route(),
    cleanup: (fn) => cleanups.push(fn),
  };
  try {
    if (path.startsWith("#/ops")) {
      if (!auth.isAdmin()) {
        view.append(notice("warn", "The operator pages are for the admin group."));
      } else if (path.startsWith("#/ops/accounts")) {
        const id = decodeURIComponent(path.slice("#/ops/accounts/".length) || "");
        await ops.accountPage(view, ctx, id);
      } else {
        const page = OPS_PAGES.find(([href]) => href === path);
        await (page ? page[2](view, ctx) : notFound(view));
      }
    } else {
      const page = USER_PAGES.find(([href]) => href === path);
      await (page ? page[2](view, ctx) : notFound(view));
    }
  } catch (error) {
    view.append(notice("bad", `This page failed: ${error.message}`));
  }
  if (mine !== generation) return;
  holder.removeAttribute("aria-busy");
  holder.dataset.ready = path;
  const heading = view.querySelector("h1");
  if (heading) document.title = `${heading.textContent} · tokenledger console`;
}

function notFound(view) {
  view.append(el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to your balance")));
}

async function start() {
  try {
    config = await loadConfig();
  } catch (error) {
    main().replaceChildren(notice("bad", `The console cannot start: ${error.message}`));
    return;
  }
  setApiBase(config.api_base);
  auth.configure(config, () => route());
  if (config.mode === "cognito") {
    try {
      await auth.completeCognitoSignIn();
    } catch (error) {
      main().replaceChildren(notice("bad", `Sign-in failed: ${error.message}`));
      return;
    }
  }
  window.addEventListener("hashchange", () => {
    main().focus({ preventScroll: true }); // screen readers start at the new page; a form may take focus next
    route();
  });
  await route();
}

start();
