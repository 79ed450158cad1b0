// synapse-admin (Ketesa) in headless Chromium against our homeserver; run by
// tests/clients/test_synapse_admin_ui.py, which seeds users, rooms, media and a report and passes
// them in the environment. Prints OK on success; on failure saves a screenshot to $ARTIFACTS.
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const SA_URL = env("SA_URL");
const HS = env("HS_BASE_URL");
const ARTIFACTS = env("ARTIFACTS");
const TIMEOUT = 20000;

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
page.setDefaultTimeout(TIMEOUT);

// Every answer of the homeserver that the UI got: a server error is a failure of ours whatever
// the page shows; 4xx answers are listed for the record.
const serverErrors = [];
const pending = [];
const KNOWN_MISSING = [/^\/_synapse\/admin\/v1\/experimental_features\//];
const clientErrors = [];
page.on("response", (resp) => {
  const url = resp.url();
  if (!url.startsWith(HS)) return;
  const line = `${resp.status()} ${resp.request().method()} ${url.slice(HS.length)}`;
  if (resp.status() >= 500) serverErrors.push(line);
  else if (resp.status() >= 400) clientErrors.push(line);
  // An admin endpoint synapse-admin calls that we lack is a failure, but for the ones docs/admin.md
  // lists as not implemented (synapse-admin copes: it shows nothing for them).
  const path = url.slice(HS.length);
  if (resp.status() === 404 && path.startsWith("/_synapse/admin/") && !KNOWN_MISSING.some((re) => re.test(path))) {
    pending.push(
      resp.json().then(
        (body) => body?.errcode === "M_UNRECOGNIZED" && serverErrors.push(`unimplemented: ${line}`),
        () => {}
      )
    );
  }
});
page.on("requestfailed", (req) => {
  if (req.url().startsWith(HS)) serverErrors.push(`FAILED ${req.method()} ${req.url()} ${req.failure()?.errorText}`);
});
page.on("pageerror", (err) => console.log(`page error: ${err.message}`));

let stepName = "start";
let stepNo = 0;
// Each step's end state is kept as a screenshot in $ARTIFACTS (step-N.png) for a person to look at.
const step = async (name) => {
  if (stepNo > 0) await page.screenshot({ path: `${ARTIFACTS}/step-${stepNo}.png` }).catch(() => {});
  stepNo += 1;
  stepName = name;
  console.log(`step ${stepNo}: ${name}`);
};

const main = page.locator("main, #main-content").first();
const seeText = (text) => main.getByText(text, { exact: false }).first().waitFor();
const go = async (hashPath) => {
  await page.goto(`${SA_URL}/#${hashPath}`);
};
const adminApi = async (path) => {
  const resp = await fetch(`${HS}/_synapse/admin${path}`, {
    headers: { Authorization: `Bearer ${env("ADMIN_TOKEN")}` },
  });
  return { status: resp.status, body: await resp.json().catch(() => null) };
};
const poll = async (what, check) => {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
};
// A confirmation dialog's confirm button (MUI dialogs), whatever its label.
const confirmDialog = async (label) => {
  const dialog = page.getByRole("dialog").last();
  await dialog.waitFor();
  await dialog.getByRole("button", { name: label }).last().click();
};

try {
  await step("log in");
  await page.goto(`${SA_URL}/`);
  const baseUrl = page.locator('input[name="base_url"]');
  await baseUrl.fill(HS);
  await baseUrl.blur();
  await page.locator('input[name="username"]').fill(env("ADMIN_USER"));
  await page.locator('input[name="password"]').fill(env("ADMIN_PASSWORD"));
  await page.getByRole("button", { name: /sign in/i }).first().click();
  await page.waitForFunction(() => localStorage.getItem("access_token") !== null);

  await step("list users");
  await go("/users");
  await seeText(env("ALICE_ID"));
  await seeText(env("BOB_ID"));
  await seeText(env("VICTIM_ID"));

  await step("search users");
  const search = page.getByRole("textbox", { name: /search/i }).first();
  await search.fill("alicewond");
  await poll("the search to narrow the list", async () =>
    (await main.getByText(env("BOB_ID")).count()) === 0 && (await main.getByText(env("ALICE_ID")).count()) > 0
  );

  await step("open a user and deactivate them");
  await go(`/users/${encodeURIComponent(env("VICTIM_ID"))}`);
  await page.locator('input[name="displayname"]').first().waitFor();
  await page.waitForFunction(
    () => document.querySelector('input[name="displayname"]')?.value === "Victor Victim"
  );
  await page.getByRole("button", { name: /deactivate|erase|delete/i }).first().click();
  await confirmDialog(/confirm|deactivate|erase|delete/i);
  await poll("the account to be deactivated", async () => {
    const { body } = await adminApi(`/v2/users/${encodeURIComponent(env("VICTIM_ID"))}`);
    return body?.deactivated === true;
  });

  await step("list rooms");
  await go("/rooms");
  await seeText("Kept Garden");
  await seeText("Doomed Lounge");

  await step("open a room and see its members");
  await go(`/rooms/${encodeURIComponent(env("KEPT_ROOM"))}/show/members`);
  await seeText(env("ALICE_ID"));
  await seeText(env("BOB_ID"));

  await step("delete a room");
  await go(`/rooms/${encodeURIComponent(env("DOOMED_ROOM"))}/show`);
  await seeText("Doomed Lounge");
  await page.getByRole("button", { name: /delete/i }).first().click();
  await confirmDialog(/confirm|delete/i);
  await poll("the room to be deleted", async () => {
    const { status } = await adminApi(`/v1/rooms/${encodeURIComponent(env("DOOMED_ROOM"))}`);
    return status === 404;
  });

  await step("list media (per user statistics)");
  await go("/user_media_statistics");
  await seeText(env("ALICE_ID"));

  await step("list a user's media");
  await go(`/users/${encodeURIComponent(env("ALICE_ID"))}/media`);
  await seeText(env("MEDIA_ID"));

  await step("list reports");
  await go("/reports");
  await seeText("Kept Garden");
  await seeText(env("ALICE_ID"));

  await step("open a report");
  await main.getByText("Kept Garden").first().click();
  await seeText(env("REPORT_REASON"));
  await seeText(env("BOB_ID"));

  await step("done");
  await Promise.all(pending);
  if (clientErrors.length) console.log(`4xx answers:\n  ${clientErrors.join("\n  ")}`);
  if (serverErrors.length) throw new Error(`server errors:\n  ${serverErrors.join("\n  ")}`);
  console.log("OK");
} catch (err) {
  console.log(`FAILED at step "${stepName}": ${err.stack || err}`);
  if (clientErrors.length) console.log(`4xx answers:\n  ${clientErrors.join("\n  ")}`);
  if (serverErrors.length) console.log(`server errors:\n  ${serverErrors.join("\n  ")}`);
  await page.screenshot({ path: `${ARTIFACTS}/synapse-admin-failure.png`, fullPage: true }).catch(() => {});
  console.log(`screenshot: ${ARTIFACTS}/synapse-admin-failure.png`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
