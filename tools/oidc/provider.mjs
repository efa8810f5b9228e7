// The OpenID provider the tests start: oauth2-mock-server, with the test's identities.
//
//   node provider.mjs [--port N] [--host 127.0.0.1]
//
// Prints one JSON line, {"issuer": "http://127.0.0.1:N"}, once it listens; stops on SIGTERM.
// It signs with an RS256 and an ES256 key and requires PKCE (S256) on the authorization code
// flow. The tests steer it through three endpoints of their own, beside the provider's:
//
//   POST /_test/identity  {claims}                 the person the next sign-ins are, as claims
//                                                  added to the access token (and sub to the
//                                                  ID token)
//   POST /_test/token     {claims, alg, expires_in} an access token signed now with the
//                                                  provider's key for alg; claims may override
//                                                  iss, aud, iat, exp
//   POST /_test/stats     {}                       {"jwks": how often the key set was fetched,
//                                                  "refreshes": refresh grants answered,
//                                                  "end_sessions": RP-initiated logouts}
//   POST /_test/sessions  {access_ttl, refuse_refresh} the lifetime (seconds) of the access
//                                                  tokens the flows issue from now on (null:
//                                                  the default), and whether refresh grants
//                                                  are refused (invalid_grant)
//   POST /_test/keys      {alg}                    rotate: a new key for alg signs from now on
//                                                  (the old one stays published, as during a
//                                                  real rotation); answers {"kid": ...}
//
// The authorization code flow signs with the RS256 key (the algorithm its discovery document
// names for ID tokens); /_test/token signs with either.
import http from "node:http";
import { parseArgs } from "node:util";
import { OAuth2Issuer, OAuth2Service } from "oauth2-mock-server";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
  },
});

const issuer = new OAuth2Issuer();
const service = new OAuth2Service(issuer);
const kids = {};
for (const alg of ["RS256", "ES256"]) {
  kids[alg] = (await issuer.keys.generate(alg)).kid;
}
// Tokens of the provider's own flows are signed with the current RS256 key.
const build = issuer.buildToken.bind(issuer);
issuer.buildToken = (opts) => build({ kid: kids.RS256, ...opts });
let identity = {};
let jwksFetches = 0;
let accessTtl = null;
let refuseRefresh = false;
let refreshes = 0;
let endSessions = 0;

// PKCE with S256, as the portal must use it: refuse an authorization request without it.
const challenged = new Set();
service.on("beforeAuthorizeRedirect", (redirect, req) => {
  const query = new URL(req.url, issuer.url).searchParams;
  if (!query.get("code_challenge") || query.get("code_challenge_method") !== "S256") {
    redirect.url.searchParams.delete("code");
    redirect.url.searchParams.set("error", "invalid_request");
    redirect.url.searchParams.set("error_description", "PKCE with S256 is required");
  } else {
    challenged.add(redirect.url.searchParams.get("code"));
  }
});
service.on("beforeResponse", (response, req) => {
  if (accessTtl !== null && response.body.expires_in !== undefined) {
    response.body.expires_in = accessTtl;
  }
  if (req.body.grant_type === "refresh_token") {
    refreshes += 1;
    if (refuseRefresh) {
      response.statusCode = 400;
      response.body = { error: "invalid_grant", error_description: "refresh token revoked" };
    }
    return;
  }
  if (req.body.grant_type !== "authorization_code") return;
  if (!challenged.delete(req.body.code) || !req.body.code_verifier) {
    response.statusCode = 400;
    response.body = { error: "invalid_grant", error_description: "PKCE verifier missing" };
  }
});
// Each token names the current identity; the ID token keeps its audience (the client).
service.on("beforeTokenSigning", (token, req) => {
  if (req.body.grant_type === "client_credentials") return;
  const { aud, ...rest } = identity;
  const isIdToken = token.payload.aud !== undefined;
  Object.assign(token.payload, isIdToken ? { sub: rest.sub ?? token.payload.sub } : identity);
  if (!isIdToken && aud === undefined) delete token.payload.aud;
  if (!isIdToken && accessTtl !== null) token.payload.exp = token.payload.iat + accessTtl;
});
service.on("beforePostLogoutRedirect", () => {
  endSessions += 1;
});

async function body(req) {
  let text = "";
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

function reply(res, status, value) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(value));
}

const control = {
  "/_test/identity": async (input) => {
    identity = input.claims ?? {};
    return { ok: true };
  },
  "/_test/token": async (input) => {
    const alg = input.alg ?? "RS256";
    const token = await issuer.buildToken({
      kid: kids[alg],
      expiresIn: input.expires_in ?? 3600,
      scopesOrTransform: (_header, payload) => Object.assign(payload, input.claims ?? {}),
    });
    return { access_token: token };
  },
  "/_test/stats": async () => ({ jwks: jwksFetches, refreshes, end_sessions: endSessions }),
  "/_test/sessions": async (input) => {
    accessTtl = input.access_ttl ?? null;
    refuseRefresh = Boolean(input.refuse_refresh);
    return { ok: true };
  },
  "/_test/keys": async (input) => {
    const alg = input.alg ?? "RS256";
    const fresh = await issuer.keys.generate(alg);
    kids[alg] = fresh.kid;
    return { kid: fresh.kid };
  },
};

const server = http.createServer(async (req, res) => {
  const path = new URL(req.url, "http://provider").pathname;
  const handler = req.method === "POST" ? control[path] : undefined;
  if (handler === undefined) {
    if (req.method === "GET" && path === "/jwks") jwksFetches += 1;
    service.requestHandler(req, res);
    return;
  }
  try {
    reply(res, 200, await handler(await body(req)));
  } catch (error) {
    reply(res, 400, { error: String(error) });
  }
});

server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  issuer.url = `http://${values.host}:${port}`;
  process.stdout.write(`${JSON.stringify({ issuer: issuer.url })}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
