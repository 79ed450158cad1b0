// Two matrix-js-sdk clients (no crypto) against our homeserver: both start their sync loops and
// reach PREPARED then SYNCING with no sync error; Alice creates a room, Bob joins, Alice sends and
// Bob receives through his sync; Bob sees Alice typing and Alice sees Bob's read receipt.
//
// Usage: node sync_basic.mjs  (env: HS_BASE_URL, ALICE_USER, BOB_USER, USER_PASSWORD)
// Run by tests/clients/test_js_sync.py with the Node that the npm package `node` provides.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = process.env.HS_BASE_URL;
const PASSWORD = process.env.USER_PASSWORD;
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 30000);

logger.setLevel(process.env.SDK_LOG_LEVEL || "warn");

function log(...args) {
    console.log(`[sync ${new Date().toISOString()}]`, ...args);
}

function waitForEvent(emitter, event, predicate, what) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
        const handler = (...args) => {
            if (predicate(...args)) {
                clearTimeout(timer);
                emitter.off(event, handler);
                resolve(args);
            }
        };
        emitter.on(event, handler);
    });
}

async function start(localpart) {
    const tmp = sdk.createClient({ baseUrl: BASE_URL });
    const res = await tmp.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password: PASSWORD,
    });
    const client = sdk.createClient({
        baseUrl: BASE_URL,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
    });
    client.syncErrors = [];
    client.states = [];
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
        client.states.push(state);
        if (state === sdk.SyncState.Error) client.syncErrors.push(data?.error?.message || String(data));
    });
    const syncing = waitForEvent(client, sdk.ClientEvent.Sync, (s) => s === sdk.SyncState.Syncing, `${localpart} SYNCING`);
    await client.startClient({ initialSyncLimit: 20 });
    await syncing;
    if (!client.states.includes(sdk.SyncState.Prepared)) throw new Error(`${localpart} never PREPARED`);
    log(`${localpart}: PREPARED then SYNCING`);
    return client;
}

async function main() {
    const alice = await start(process.env.ALICE_USER);
    const bob = await start(process.env.BOB_USER);

    const { room_id: roomId } = await alice.createRoom({ preset: "public_chat", name: "js-sdk room" });
    const bobJoined = waitForEvent(bob, sdk.RoomEvent.MyMembership, (room, m) => room.roomId === roomId && m === "join", "Bob's join");
    await bob.joinRoom(roomId);
    await bobJoined;

    const received = waitForEvent(
        bob,
        sdk.RoomEvent.Timeline,
        (event, room) => room?.roomId === roomId && event.getType() === "m.room.message" && event.getContent().body === "hello from alice",
        "Bob receiving Alice's message",
    );
    const { event_id: sentId } = await alice.sendTextMessage(roomId, "hello from alice");
    const [event] = await received;
    if (event.getId() !== sentId) throw new Error(`received ${event.getId()}, sent ${sentId}`);
    log("Bob received the message through sync");

    const typing = waitForEvent(
        bob,
        sdk.RoomMemberEvent.Typing,
        (_event, member) => member.roomId === roomId && member.userId === alice.getUserId() && member.typing,
        "Bob seeing Alice typing",
    );
    await alice.sendTyping(roomId, true, 10000);
    await typing;
    log("Bob saw Alice typing");

    const bobId = bob.getUserId();
    const receipt = waitForEvent(
        alice,
        sdk.RoomEvent.Receipt,
        (receiptEvent, room) => {
            if (room?.roomId !== roomId) return false;
            const byType = receiptEvent.getContent()[sentId] || {};
            return Boolean(byType["m.read"]?.[bobId]);
        },
        "Alice seeing Bob's read receipt",
    );
    await bob.sendReadReceipt(event);
    await receipt;
    log("Alice saw Bob's read receipt");

    for (const client of [alice, bob]) {
        if (client.syncErrors.length) throw new Error(`sync errors: ${client.syncErrors.join("; ")}`);
        client.stopClient();
    }
    console.log("OK");
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error(err);
        process.exit(1);
    },
);
