// Sign-in. Production: Cognito's hosted UI, authorization code flow with PKCE (no client secret in a
// browser). `make run`: development tokens from the local stack's user picker (/console/dev/token).
// Tokens live in sessionStorage: gone when the tab closes. The claims read here only shape the UI;
// the API decides what each caller may do.

const STORE = "tokenledger.console.session";
const PKCE = "tokenledger.console.pkce";
let config = { mode: "dev" };
let onExpired = () => {};

function b64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

function groupsOf(claims) {
  const raw = claims["cognito:groups"];
  if (Array.isArray(raw)) return raw;
  if (typeof raw === "string") return raw.replace(/^\[|\]$/g, "").split(/\s+/).filter(Boolean);
  return [];
}

function load() {
  try {
    const session = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (session && session.expires_at > Date.now() / 1000 + 30) return session;
  } catch {
    /* a damaged entry is the same as none */
  }
  return null;
}

function save(token, expiresIn) {
  const claims = claimsOf(token);
  const session = {
    token,
    sub: claims.sub || claims.username || "?",
    groups: groupsOf(claims),
    expires_at: claims.exp || Math.floor(Date.now() / 1000) + (expiresIn || 3600),
  };
  sessionStorage.setItem(STORE, JSON.stringify(session));
  return session;
}

export const auth = {
  configure(value, expired) {
    config = value;
    onExpired = expired;
  },
  mode: () => config.mode,
  session: () => load(),
  token: () => (load() || {}).token || null,
  isAdmin: () => ((load() || {}).groups || []).includes("admin"),
  expired() {
    sessionStorage.removeItem(STORE);
    onExpired();
  },

  /** `make run` only: a development token for any user, optionally in the admin group. */
  async devSignIn(user, admin) {
    const response = await fetch("/console/dev/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user, admin }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || "sign-in refused");
    return save(body.token, body.expires_in);
  },

  /** Production: off to Cognito's hosted UI with a PKCE challenge. */
  async cognitoSignIn() {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(48)));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    sessionStorage.setItem(PKCE, JSON.stringify({ verifier, state, hash: window.location.hash }));
    const url = new URL("/oauth2/authorize", config.cognito.domain);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: config.cognito.client_id,
      redirect_uri: config.cognito.redirect_uri,
      scope: config.cognito.scopes || "openid email",
      code_challenge_method: "S256",
      code_challenge: challenge,
      state,
    }).toString();
    window.location.assign(url.toString());
  },

  /** Back from the hosted UI with ?code&state: exchange the code (with the PKCE verifier) for tokens. */
  async completeCognitoSignIn() {
    const params = new URLSearchParams(window.location.search);
    const code = params.get("code");
    if (!code) return false;
    const pending = JSON.parse(sessionStorage.getItem(PKCE) || "null");
    sessionStorage.removeItem(PKCE);
    window.history.replaceState(null, "", window.location.pathname + ((pending && pending.hash) || ""));
    if (!pending || pending.state !== params.get("state")) throw new Error("sign-in state mismatch: start again");
    const response = await fetch(new URL("/oauth2/token", config.cognito.domain), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        client_id: config.cognito.client_id,
        code,
        redirect_uri: config.cognito.redirect_uri,
        code_verifier: pending.verifier,
      }),
    });
    const tokens = await response.json();
    if (!response.ok) throw new Error(tokens.error_description || tokens.error || "token exchange refused");
    save(tokens.access_token, tokens.expires_in);
    return true;
  },

  signOut() {
    sessionStorage.removeItem(STORE);
    if (config.mode === "cognito") {
      const url = new URL("/logout", config.cognito.domain);
      url.search = new URLSearchParams({ client_id: config.cognito.client_id, logout_uri: config.cognito.logout_uri || config.cognito.redirect_uri }).toString();
      window.location.assign(url.toString());
    } else {
      window.location.hash = "#/";
      window.location.reload();
    }
  },
};
