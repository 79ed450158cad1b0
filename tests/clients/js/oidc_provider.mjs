// A real OpenID Connect provider (the OpenID-certified `oidc-provider` package) on loopback, for
// the SSO tests (tests/api/test_sso_oidc.py). Its development login/consent pages accept any user
// name; the claims come from ACCOUNTS below (or are derived from the name).
//
// Usage: node oidc_provider.mjs <port> <client_id> <client_secret> <redirect_uri>
// Prints "READY <issuer>" once listening.
import Provider from "oidc-provider";

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  "kim.minjun": { name: "김민준", email: "minjun.kim@school.example" },
  "Park Teacher": { name: "박지훈", email: "jihoon.park@school.example" },
  existing: { name: "Existing User", email: "existing@school.example" },
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: { openid: ["sub"], profile: ["name", "preferred_username", "nickname"], email: ["email", "email_verified"] },
  // Put the scope's claims in the ID token itself (the default keeps them for userinfo).
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["test-cookie-key"] },
  // The subject is the login name (oidc-provider's dev login makes it the account id). The
  // userinfo endpoint also gives a `nickname` the ID token lacks, so a test can tell which of the
  // two the homeserver read.
  async findAccount(ctx, id) {
    const known = ACCOUNTS[id] || { name: id, email: undefined };
    return {
      accountId: id,
      async claims(use) {
        return {
          sub: id,
          preferred_username: RENAMED[id] || id,
          name: known.name,
          email: known.email,
          email_verified: Boolean(known.email),
          ...(use === "userinfo" ? { nickname: `${known.name} (from userinfo)` } : {}),
        };
      },
    };
  },
});

// Test control: GET /test/rename?account=<sub>&name=<new preferred_username> (a user renamed at
// the provider keeps their subject).
const RENAMED = {};
provider.use(async (ctx, next) => {
  if (ctx.path === "/test/rename") {
    RENAMED[ctx.query.account] = ctx.query.name;
    ctx.body = "renamed";
    return;
  }
  await next();
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`READY ${issuer}`);
});
