// The browser snippet of docs/websocket.md ("Browser (JavaScript)"), run as written in headless
// Chromium against a real server; driven by tests/clients/test_websocket_js.py over stdin/stdout:
// one JSON object per line out, one line per step in (the test does the other user's part).
// Environment: CHROMIUM, HS_BASE_URL, TOKEN (Bob's), ROOM_ID, ALICE (her user id), SNIPPET (a
// file holding the snippet exactly as the doc has it).
import { readFileSync } from "node:fs";
import readline from "node:readline";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const HS = env("HS_BASE_URL");
const ROOM = env("ROOM_ID");
const ALICE = env("ALICE");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const queued = [];
const waiting = [];
const input = readline.createInterface({ input: process.stdin });
input.on("line", (line) => {
  const waiter = waiting.shift();
  if (waiter) waiter(line.trim());
  else queued.push(line.trim());
});
const readLine = () => new Promise((resolve) => (queued.length ? resolve(queued.shift()) : waiting.push(resolve)));

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  // Root in CI containers: no sandbox; a small /dev/shm there: not used.
  args: ["--headless", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(60000);
  page.on("pageerror", (err) => process.stderr.write(`page error: ${err.message}\n`));
  // A page of the homeserver's origin (any page would do: WebSockets are not subject to CORS).
  await page.goto(`${HS}/_matrix/client/versions`);
  await page.addScriptTag({ content: readFileSync(env("SNIPPET"), "utf8") });
  await page.evaluate(
    ({ base, token }) => {
      window.syncs = [];
      window.closedWith = null;
      window.conn = connectSync(base, token, (body) => window.syncs.push(body));
      window.conn.ws.addEventListener("close", (event) => (window.closedWith = event.code));
    },
    { base: HS, token: env("TOKEN") }
  );
  await page.waitForFunction(() => window.syncs.length > 0);
  out({
    ready: true,
    protocol: await page.evaluate(() => window.conn.ws.protocol),
    extensions: await page.evaluate(() => window.conn.ws.extensions),
  });

  // Alice's message, pushed live.
  const wanted = await readLine();
  await page.waitForFunction(
    ([room, id]) =>
      window.syncs.some((b) => ((b.rooms.join[room] || {}).timeline || { events: [] }).events.some((e) => e.event_id === id)),
    [ROOM, wanted]
  );
  out({ got: wanted });

  // Alice's typing notification and read receipt, as ephemeral events in later frames.
  await readLine();
  // Self-contained (Playwright runs its source in the page): both seen, or null.
  const seen = ([room, alice, eventId]) => {
    const events = window.syncs.flatMap((b) => ((b.rooms.join[room] || {}).ephemeral || { events: [] }).events);
    const read = (e) => ((e.content[eventId] || {})["m.read"] || {})[alice] !== undefined;
    const typing = events.some((e) => e.type === "m.typing" && e.content.user_ids.includes(alice));
    const receipt = events.some((e) => e.type === "m.receipt" && read(e));
    return typing && receipt ? { typing, receipt } : null;
  };
  await page.waitForFunction(seen, [ROOM, ALICE, wanted]);
  out(await page.evaluate(seen, [ROOM, ALICE, wanted]));

  // Bob's part over the socket: a send (twice: idempotent by txn id), typing, a receipt, an error.
  const result = await page.evaluate(
    async ([room, eventId]) => {
      const { conn } = window;
      const content = { msgtype: "m.text", body: "from chromium" };
      const sent = await conn.send(room, content, "chromium-1");
      const again = await conn.send(room, content, "chromium-1");
      await conn.typing(room, true);
      await conn.receipt(room, eventId);
      let error = null;
      try {
        await conn.request("GET", "/_matrix/client/v3/no/such/thing");
      } catch (e) {
        error = e.errcode;
      }
      return { sent: sent.event_id, again: again.event_id, error };
    },
    [ROOM, wanted]
  );
  // His own echo comes back in a sync frame with its transaction id.
  await page.waitForFunction(
    ([room, id]) =>
      window.syncs.some((b) =>
        ((b.rooms.join[room] || {}).timeline || { events: [] }).events.some(
          (e) => e.event_id === id && (e.unsigned || {}).transaction_id === "chromium-1"
        )
      ),
    [ROOM, result.sent]
  );
  result.nextBatch = await page.evaluate(() => window.conn.nextBatch);
  out(result);

  await page.evaluate(() => window.conn.ws.close(1000));
  await page.waitForFunction(() => window.closedWith !== null);
  out({ closed: await page.evaluate(() => window.closedWith) });
} finally {
  input.close(); // else stdin keeps Node running
  await browser.close();
}
