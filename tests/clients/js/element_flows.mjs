// What Element does with matrix-js-sdk (Rust crypto) right after two people register, against our
// homeserver:
//
// 1. /versions says `org.matrix.e2e_cross_signing` (else Element shows "Your homeserver does not
//    support cross-signing" and never sets it up);
// 2. each registers through /register (UIA with m.login.dummy) and at once runs
//    `bootstrapCrossSigning`; their own device must then be reported as signed by its owner;
// 3. they share an encrypted DM; Alice sees Bob's device as signed by its owner, so Bob's messages
//    carry no red shield ("Encrypted by a device not verified by its owner");
// 4. Alice verifies Bob with SAS (Element's "Verify User"); Bob is then cross-signing verified;
// 5. all along both sync with Element's filter (lazy-loaded members, no redundant members): no
//    incremental sync may carry a member event the client was already sent, nor room state without
//    any timeline event.
//
// Usage: node element_flows.mjs  (env: HS_BASE_URL, USER_PASSWORD)
// Run by tests/clients/test_js_element.py with the Node that the npm package `node` provides.

import * as sdk from "matrix-js-sdk";
import {
    CryptoEvent,
    EventShieldColour,
    VerificationPhase,
    VerifierEvent,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = process.env.HS_BASE_URL;
const PASSWORD = process.env.USER_PASSWORD;
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 60000);
const RUN = Math.random().toString(36).slice(2, 8);

logger.setLevel(process.env.SDK_LOG_LEVEL || "warn");

function log(...args) {
    console.log(`[element ${new Date().toISOString()}]`, ...args);
}

async function waitFor(what, predicate, timeoutMs = STEP_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await predicate();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
    }
}

// Registration as Element does it: the first request gets the UIA flows, the second completes
// the dummy stage.
async function register(label) {
    const tmp = sdk.createClient({ baseUrl: BASE_URL });
    const body = { username: `${label}-${RUN}`, password: PASSWORD, initial_device_display_name: `${label}'s Element` };
    try {
        return await tmp.registerRequest(body);
    } catch (err) {
        if (err.httpStatus !== 401 || !err.data?.session) throw err;
        return await tmp.registerRequest({ ...body, auth: { type: "m.login.dummy", session: err.data.session } });
    }
}

async function start(label) {
    const res = await register(label);
    log(`${label}: registered ${res.user_id} on device ${res.device_id}`);
    // Every /sync response this client gets, to check the lazy-loading rules afterwards.
    const syncs = [];
    const fetchFn = async (input, init) => {
        const resp = await fetch(input, init);
        const url = new URL(input instanceof Request ? input.url : String(input));
        if (url.pathname.endsWith("/sync") && resp.ok) {
            syncs.push({ since: url.searchParams.get("since"), body: await resp.clone().json() });
        }
        return resp;
    };
    const client = sdk.createClient({
        baseUrl: BASE_URL,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
        fetchFn,
    });
    client.label = label;
    client.syncs = syncs;
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === sdk.SyncState.Prepared) resolve();
            if (state === sdk.SyncState.Error) log(`${label}: sync error`, data?.error?.message);
        });
        setTimeout(() => reject(new Error(`${label}: initial sync timed out`)), STEP_TIMEOUT_MS);
    });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
    await prepared;
    return client;
}

async function bootstrapAfterRegistration(client) {
    const crypto = client.getCrypto();
    const userId = client.getUserId();
    const deviceId = client.getDeviceId();
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: userId },
                password: PASSWORD,
            });
        },
    });
    await waitFor(`${client.label}: cross-signing ready`, () => crypto.isCrossSigningReady());
    // The device's signature by the self-signing key reaches the client through /keys/query
    // after the device-list change; this is the step that once raced.
    const status = await waitFor(`${client.label}: own device signed by its owner`, async () => {
        const s = await crypto.getDeviceVerificationStatus(userId, deviceId);
        return s?.signedByOwner && s?.crossSigningVerified ? s : null;
    });
    log(`${client.label}: cross-signing set up; own device signedByOwner=${status.signedByOwner}`);
}

async function verifyWithSas(alice, bob, roomId) {
    const bobRequest = new Promise((resolve) => {
        bob.on(CryptoEvent.VerificationRequestReceived, (request) => resolve(request));
    });
    const request = await alice.getCrypto().requestVerificationDM(bob.getUserId(), roomId);
    const incoming = await bobRequest;
    await incoming.accept();
    await waitFor("verification ready", () => request.phase === VerificationPhase.Ready);
    const confirmSas = (verifier) =>
        new Promise((resolve, reject) => {
            verifier.on(VerifierEvent.ShowSas, (sas) => {
                sas.confirm().then(resolve, reject);
            });
            verifier.on(VerifierEvent.Cancel, (e) => reject(new Error(`verification cancelled: ${e?.message || e}`)));
        });
    const aliceVerifier = await request.startVerification("m.sas.v1");
    const aliceDone = Promise.all([aliceVerifier.verify(), confirmSas(aliceVerifier)]);
    const bobVerifier = await waitFor("bob's verifier", () => incoming.verifier);
    const bobDone = Promise.all([bobVerifier.verify(), confirmSas(bobVerifier)]);
    await Promise.all([aliceDone, bobDone]);
    await waitFor("verification done", () => request.phase === VerificationPhase.Done);
}

// No incremental sync carries a member event the client was already sent, nor state alone.
function checkLazySyncs(client) {
    const sent = new Set();
    let incremental = 0;
    let withState = 0;
    for (const { since, body } of client.syncs) {
        for (const [roomId, room] of Object.entries(body.rooms?.join || {})) {
            const state = room.state?.events || [];
            const timeline = room.timeline?.events || [];
            if (since !== null && state.length) {
                withState += 1;
                if (!timeline.length) {
                    throw new Error(`${client.label}: incremental sync with state but no timeline in ${roomId}: ${JSON.stringify(state)}`);
                }
                for (const ev of state) {
                    if (ev.type === "m.room.member" && sent.has(`${roomId}|${ev.event_id}`)) {
                        throw new Error(`${client.label}: member event ${ev.event_id} (${ev.state_key}) sent again`);
                    }
                }
            }
            for (const ev of [...state, ...timeline]) {
                if (ev.type === "m.room.member") sent.add(`${roomId}|${ev.event_id}`);
            }
        }
        if (since !== null) incremental += 1;
    }
    log(`${client.label}: ${incremental} incremental syncs, ${withState} room sections with state, no redundant members`);
    if (incremental < 5) throw new Error(`${client.label}: only ${incremental} incremental syncs checked`);
}

async function main() {
    const probe = sdk.createClient({ baseUrl: BASE_URL });
    if (!(await probe.doesServerSupportUnstableFeature("org.matrix.e2e_cross_signing"))) {
        throw new Error("/versions does not advertise org.matrix.e2e_cross_signing");
    }
    const alice = await start("alice");
    const bob = await start("bob");
    const clients = [alice, bob];
    try {
        await bootstrapAfterRegistration(alice);
        await bootstrapAfterRegistration(bob);

        const { room_id: roomId } = await alice.createRoom({
            is_direct: true,
            preset: "trusted_private_chat",
            invite: [bob.getUserId()],
            initial_state: [
                { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            ],
        });
        await waitFor("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
        await bob.joinRoom(roomId);
        await waitFor("alice to see bob joined", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
        await waitFor("room encrypted for bob", () => bob.getCrypto().isEncryptionEnabledInRoom(roomId));

        // Bob's device as Alice sees it: signed by its owner (no red shield on his messages).
        const bobDevice = bob.getDeviceId();
        await waitFor("alice sees bob's device signed by bob", async () => {
            const s = await alice.getCrypto().getDeviceVerificationStatus(bob.getUserId(), bobDevice);
            return s?.signedByOwner;
        });
        const before = await alice.getCrypto().getUserVerificationStatus(bob.getUserId());
        if (before.isCrossSigningVerified()) throw new Error("bob verified before any verification");

        // Messages, receipts and typing back and forth: the incremental syncs checked below.
        for (let i = 0; i < 3; i++) {
            const { event_id: fromBob } = await bob.sendTextMessage(roomId, `bob ${i}`);
            const event = await waitFor(`alice receives bob ${i}`, () => alice.getRoom(roomId)?.findEventById(fromBob));
            await alice.decryptEventIfNeeded(event);
            if (event.isDecryptionFailure()) throw new Error(`alice cannot decrypt ${fromBob}`);
            const info = await alice.getCrypto().getEncryptionInfoForEvent(event);
            if (info?.shieldColour === EventShieldColour.RED) {
                throw new Error(`red shield on bob's message: ${info.shieldReason}`);
            }
            await alice.sendReadReceipt(event);
            await alice.sendTyping(roomId, true, 5000);
            const { event_id: fromAlice } = await alice.sendTextMessage(roomId, `alice ${i}`);
            await waitFor(`bob receives alice ${i}`, () => bob.getRoom(roomId)?.findEventById(fromAlice));
        }
        log("messages exchanged without red shields");

        await verifyWithSas(alice, bob, roomId);
        await waitFor("alice: bob cross-signing verified", async () =>
            (await alice.getCrypto().getUserVerificationStatus(bob.getUserId())).isCrossSigningVerified(),
        );
        log("alice verified bob (SAS)");

        // One more round so that syncs after the verification are checked too.
        const { event_id: last } = await bob.sendTextMessage(roomId, "verified now");
        await waitFor("alice receives the last message", () => alice.getRoom(roomId)?.findEventById(last));

        for (const client of clients) checkLazySyncs(client);
        log("OK");
    } finally {
        for (const client of clients) client.stopClient();
    }
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error("ELEMENT FLOWS FAILED:", err?.stack || err);
        process.exit(1);
    },
);
