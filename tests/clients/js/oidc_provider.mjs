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
  "kim.minjun": { name: "김민준", email: "minjun.kim@school.example", groups: ["staff", "teachers"] },
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
  claims: { openid: ["sub"], profile: ["name", "preferred_username", "nickname", "groups"], email: ["email", "email_verified"] },
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
          preferred_username: OVERRIDES[id]?.preferred_username || id,
          name: OVERRIDES[id]?.name || known.name,
          groups: known.groups || ["students"],
          email: known.email,
          email_verified: Boolean(known.email),
          ...(use === "userinfo" ? { nickname: `${known.name} (from userinfo)` } : {}),
        };
      },
    };
  },
});

// Test control: GET /test/set?account=<sub>&preferred_username=..&name=.. changes what the
// provider says of a user (a user renamed at the provider keeps their subject).
const OVERRIDES = {};
provider.use(async (ctx, next) => {
  if (ctx.path === "/test/set") {
    const { account, ...claims } = ctx.query;
    OVERRIDES[account] = claims;
    ctx.body = "set";
    return;
  }
  await next();
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`READY ${issuer}`);
});
