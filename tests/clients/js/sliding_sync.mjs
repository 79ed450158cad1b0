// matrix-js-sdk's sliding sync (simplified MSC4186, /_matrix/client/unstable/org.matrix.simplified_msc3575/sync)
// against our homeserver: Alice's client starts with `startClient({slidingSync})`, its room list
// fills from one list (recency order, timeline_limit 5), each room's name and timeline are read
// from the client's store, and a message sent afterwards arrives through the long-poll.
//
// Usage: node sliding_sync.mjs  (env: HS_BASE_URL, ALICE_USER, BOB_USER, USER_PASSWORD)
// Run by tests/clients/test_js_sliding_sync.py with the Node that the npm package `node` provides.

import * as sdk from "matrix-js-sdk";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = process.env.HS_BASE_URL;
const PASSWORD = process.env.USER_PASSWORD;
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 30000);

logger.setLevel(process.env.SDK_LOG_LEVEL || "warn");

function log(...args) {
    console.log(`[sliding ${new Date().toISOString()}]`, ...args);
}

async function until(what, check) {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    for (;;) {
        const value = check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

async function login(localpart) {
    const tmp = sdk.createClient({ baseUrl: BASE_URL });
    const res = await tmp.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password: PASSWORD,
    });
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
}

function bodies(room) {
    return room.getLiveTimeline().getEvents()
        .filter((e) => e.getType() === "m.room.message")
        .map((e) => e.getContent().body);
}

async function main() {
    const versions = await (await fetch(`${BASE_URL}/_matrix/client/versions`)).json();
    if (!versions.unstable_features?.["org.matrix.simplified_msc3575"]) {
        throw new Error("server does not advertise org.matrix.simplified_msc3575");
    }
    const creds = await login(process.env.ALICE_USER);
    // Rooms made before the client starts, through a plain client.
    const setup = sdk.createClient({ baseUrl: BASE_URL, ...creds });
    const rooms = [];
    for (const name of ["first", "second", "third"]) {
        const { room_id } = await setup.createRoom({ name: `room ${name}` });
        await setup.sendTextMessage(room_id, `hello in ${name}`);
        rooms.push(room_id);
    }
    log("created", rooms);

    const client = sdk.createClient({ baseUrl: BASE_URL, ...creds });
    const lists = new Map([
        ["all", {
            ranges: [[0, 19]],
            timeline_limit: 5,
            required_state: [["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.create", ""]],
        }],
    ]);
    const slidingSync = new SlidingSync(BASE_URL, lists, { timeline_limit: 5, required_state: [] }, client, 10000);
    await client.startClient({ slidingSync });

    await until("all three rooms in the store with their name and message", () =>
        rooms.every((id) => {
            const room = client.getRoom(id);
            return room && room.name.startsWith("room ") && bodies(room).length > 0;
        }));
    for (const id of rooms) {
        const room = client.getRoom(id);
        log(id, JSON.stringify(room.name), bodies(room));
        if (!bodies(room).some((b) => b.startsWith("hello in"))) throw new Error(`no message in ${id}`);
    }
    const count = await until("list count", () => slidingSync.getListData("all")?.joinedCount);
    if (count !== 3) throw new Error(`list count ${count}, expected 3`);

    // Live: a message sent now arrives through the long-poll.
    await setup.sendTextMessage(rooms[0], "live message");
    await until("the live message", () => bodies(client.getRoom(rooms[0])).includes("live message"));
    log("live message received");

    client.stopClient();
    setup.stopClient();
    console.log("OK");
    process.exit(0);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
