// A real OpenID provider for the SSO tests: the `oidc-provider` npm package (9.x) with its
// built-in development login and consent pages.
//
//   node tests/oidc/provider.mjs <port> '<clients JSON>'
//   (or PORT / OIDC_CLIENTS in the environment)
//
// Clients: a JSON array of {client_id, client_secret, redirect_uris,
// token_endpoint_auth_method?: "client_secret_basic" | "client_secret_post"}; every client
// uses the authorization code grant with PKCE (S256), which is required.
//
// The issuer is http://127.0.0.1:<port>. When ready it prints "oidc-provider listening
// <issuer>" on stdout. Each instance signs with its own freshly generated RSA key and uses
// cookie names of its own, so two instances on 127.0.0.1 (cookies ignore the port) never
// read each other's sessions.
//
// Accounts: the dev login page accepts any login name (and any password). The login name
// is read as `<name>[+<tag>...][@<domain>]`:
//   email           the login itself if it contains "@", else `<login>@initech.example`
//                   (lower-cased)
//   sub             "acct-" + the first 24 hex digits of SHA-256 of the email *without*
//                   its +tags, so the same person logging in with other tags keeps their
//                   subject: "carol+admin@initech.example" and "carol+viewer@initech.example"
//                   are one identity whose groups changed
//   groups          one "ledgerline-<tag>" per tag, in order, except the "unverified" tag:
//                   "carol+admin@initech.example"           -> ["ledgerline-admin"]
//                   "dan+software-payer+viewer@initech.example"
//                        -> ["ledgerline-software-payer", "ledgerline-viewer"]
//                   "erin@initech.example"                  -> []
//   email_verified  true, unless the tag "unverified" is present
//   name            the name part, capitalised ("Carol")
//
// Scopes "openid email profile groups" put email, email_verified, name and groups in the
// ID token (conformIdTokenClaims: false).

import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";

import Provider from "oidc-provider";

const port = Number(process.argv[2] || process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node provider.mjs <port> '<clients JSON>'");
  process.exit(2);
}
const clients = JSON.parse(process.argv[3] || process.env.OIDC_CLIENTS || "[]").map((c) => ({
  grant_types: ["authorization_code"],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
  ...c,
}));
const issuer = `http://127.0.0.1:${port}`;

export function accountFromLogin(login) {
  const raw = String(login).trim().toLowerCase();
  const email = raw.includes("@") ? raw : `${raw}@initech.example`;
  const [local, domain] = email.split("@");
  const [name, ...tags] = local.split("+");
  const base = `${name}@${domain}`;
  const sub = "acct-" + createHash("sha256").update(base).digest("hex").slice(0, 24);
  return {
    sub,
    email,
    email_verified: !tags.includes("unverified"),
    name: name.charAt(0).toUpperCase() + name.slice(1),
    groups: tags.filter((t) => t && t !== "unverified").map((t) => `ledgerline-${t}`),
  };
}

const accounts = new Map(); // sub -> claims of the latest login

const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: "jwk" }),
  kid: `k-${port}-${randomBytes(4).toString("hex")}`,
  use: "sig",
  alg: "RS256",
};

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  responseTypes: ["code"],
  scopes: ["openid", "email", "profile", "groups"],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  conformIdTokenClaims: false,
  cookies: {
    keys: [randomBytes(32).toString("hex")],
    names: {
      session: `_session_${port}`,
      interaction: `_interaction_${port}`,
      resume: `_interaction_resume_${port}`,
    },
  },
  async findAccount(ctx, sub) {
    const claims = accounts.get(sub);
    if (!claims) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { ...claims };
      },
    };
  },
});

// The dev login page posts {prompt: "login", login, password}. Its built-in handler would
// make the login name the account id (and so the `sub`); this one keeps the page and makes
// the account id the stable `sub` derived from the login (see the header), remembering the
// claims of the latest login for findAccount. Consent stays with the built-in handler.
provider.use(async (ctx, next) => {
  if (ctx.method === "POST" && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      details = undefined;
    }
    if (details?.prompt?.name === "login") {
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
      const login = (form.get("login") || "").trim();
      if (!login) {
        ctx.status = 400;
        ctx.body = "login required";
        return;
      }
      const account = accountFromLogin(login);
      accounts.set(account.sub, account);
      ctx.respond = false;
      await provider.interactionFinished(
        ctx.req,
        ctx.res,
        { login: { accountId: account.sub } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
  }
  await next();
});

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening ${issuer}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0));
}
