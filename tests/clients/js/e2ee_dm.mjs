// End-to-end encryption with matrix-js-sdk and its Rust crypto against our homeserver.
//
// Alice and Bob log in, bootstrap cross-signing, secret storage and key backup; Alice creates an
// encrypted DM with Bob and sends messages; Bob's client decrypts them. Then a second Bob device
// logs in, fetches the backup key from secret storage, restores the key backup and decrypts the
// history. Any unable-to-decrypt event fails the run.
//
// Usage: node e2ee_dm.mjs  (env: HS_BASE_URL, ALICE_USER, BOB_USER, USER_PASSWORD; BOB_BASE_URL
// puts Bob on another homeserver, for the encrypted DM across federation)
// Run by tests/clients/test_js_e2ee.py with the Node that the npm package `node` provides.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const BASE_URL = process.env.HS_BASE_URL;
const BOB_BASE_URL = process.env.BOB_BASE_URL || BASE_URL;
const PASSWORD = process.env.USER_PASSWORD;
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 60000);
const MESSAGES = ["first secret", "second secret", "third secret"];

logger.setLevel(process.env.SDK_LOG_LEVEL || "warn");

function log(...args) {
    console.log(`[e2ee ${new Date().toISOString()}]`, ...args);
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

async function login(localpart, deviceName, baseUrl = BASE_URL) {
    const tmp = sdk.createClient({ baseUrl });
    const res = await tmp.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password: PASSWORD,
        initial_device_display_name: deviceName,
    });
    log(`${deviceName}: logged in as ${res.user_id} on device ${res.device_id}`);
    // Secret storage keys handed to the SDK when it asks (set once the user has a recovery key).
    const secretKeys = new Map();
    const client = sdk.createClient({
        baseUrl,
        userId: res.user_id,
        accessToken: res.access_token,
        deviceId: res.device_id,
        cryptoCallbacks: {
            getSecretStorageKey: async ({ keys }) => {
                for (const keyId of Object.keys(keys)) {
                    if (secretKeys.has(keyId)) return [keyId, secretKeys.get(keyId)];
                }
                const [keyId] = Object.keys(keys);
                if (secretKeys.has("*")) return [keyId, secretKeys.get("*")];
                throw new Error(`no secret storage key for ${Object.keys(keys)}`);
            },
        },
    });
    client.secretKeys = secretKeys;
    client.label = deviceName;
    // Every decryption failure this device ever sees (the sdk retries when keys arrive later).
    client.utds = [];
    client.on(sdk.MatrixEventEvent.Decrypted, (event) => {
        if (event.isDecryptionFailure()) client.utds.push(event.getId());
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === sdk.SyncState.Prepared) resolve();
            if (state === sdk.SyncState.Error) log(`${deviceName}: sync error`, data?.error?.message);
        });
        setTimeout(() => reject(new Error(`${deviceName}: initial sync timed out`)), STEP_TIMEOUT_MS);
    });
    await client.startClient({ initialSyncLimit: 50 });
    await prepared;
    log(`${deviceName}: synced`);
    return client;
}

async function bootstrap(client) {
    const crypto = client.getCrypto();
    const userId = client.getUserId();
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            await makeRequest({
                type: "m.login.password",
                identifier: { type: "m.id.user", user: userId },
                password: PASSWORD,
            });
        },
    });
    const recoveryKey = await crypto.createRecoveryKeyFromPassphrase();
    client.secretKeys.set("*", recoveryKey.privateKey);
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => recoveryKey,
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    await waitFor(`${client.label}: cross-signing ready`, () => crypto.isCrossSigningReady());
    await waitFor(`${client.label}: secret storage ready`, () => crypto.isSecretStorageReady());
    const version = await waitFor(`${client.label}: key backup active`, () => crypto.getActiveSessionBackupVersion());
    log(`${client.label}: cross-signing, secret storage and key backup ${version} ready`);
    return recoveryKey;
}

async function decryptedBodies(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return null;
    const events = room
        .getLiveTimeline()
        .getEvents()
        .filter((e) => e.getWireType() === "m.room.encrypted");
    const bodies = [];
    for (const event of events) {
        await client.decryptEventIfNeeded(event);
        if (event.isDecryptionFailure()) {
            bodies.push({ utd: true, id: event.getId(), reason: event.decryptionFailureReason });
        } else if (event.getType() === "m.room.message") {
            bodies.push(event.getContent().body);
        }
    }
    return bodies;
}

function checkAllDecrypted(label, bodies) {
    const failures = bodies.filter((b) => typeof b !== "string");
    if (failures.length) throw new Error(`${label}: unable to decrypt ${JSON.stringify(failures)}`);
    for (const message of MESSAGES) {
        if (!bodies.includes(message)) throw new Error(`${label}: missing "${message}" in ${JSON.stringify(bodies)}`);
    }
}

async function main() {
    const alice = await login(process.env.ALICE_USER, "alice-device");
    const bob = await login(process.env.BOB_USER, "bob-device-1", BOB_BASE_URL);
    const clients = [alice, bob];
    let bob2;
    try {
        await bootstrap(alice);
        const bobRecoveryKey = await bootstrap(bob);

        const { room_id: roomId } = await alice.createRoom({
            is_direct: true,
            preset: "trusted_private_chat",
            invite: [bob.getUserId()],
            initial_state: [
                { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
            ],
        });
        log(`alice created encrypted DM ${roomId}`);
        await waitFor("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
        await bob.joinRoom(roomId);
        await waitFor(
            "alice to see bob joined",
            () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join",
        );
        await waitFor("room encrypted for alice", () => alice.getCrypto().isEncryptionEnabledInRoom(roomId));

        for (const body of MESSAGES) {
            await alice.sendMessage(roomId, { msgtype: "m.text", body });
        }
        log("alice sent", MESSAGES.length, "messages");

        const bobBodies = await waitFor("bob to decrypt", async () => {
            const bodies = await decryptedBodies(bob, roomId);
            return bodies && MESSAGES.every((m) => bodies.includes(m)) ? bodies : null;
        });
        checkAllDecrypted("bob", bobBodies);
        log("bob decrypted:", JSON.stringify(bobBodies));

        // Bob's device backs up the room key it received; wait until the server holds it.
        const backupVersion = await bob.getCrypto().getActiveSessionBackupVersion();
        await waitFor("bob's room key in the backup", async () => {
            const res = await bob.http.authedRequest(sdk.Method.Get, `/room_keys/keys/${encodeURIComponent(roomId)}`, {
                version: backupVersion,
            });
            return Object.keys(res.sessions || {}).length > 0;
        });
        log("room key is in bob's backup", backupVersion);

        // A second Bob device: recovery key -> backup key from secret storage -> restore history.
        bob2 = await login(process.env.BOB_USER, "bob-device-2", BOB_BASE_URL);
        clients.push(bob2);
        bob2.secretKeys.set("*", bobRecoveryKey.privateKey);
        const crypto2 = bob2.getCrypto();
        await crypto2.loadSessionBackupPrivateKeyFromSecretStorage();
        const check = await crypto2.checkKeyBackupAndEnable();
        if (!check) throw new Error("bob-device-2: no key backup found");
        const restored = await crypto2.restoreKeyBackup();
        log(`bob-device-2 restored ${restored.imported}/${restored.total} keys from backup`);
        if (restored.imported < 1) throw new Error("bob-device-2 imported no keys from the backup");
        const bob2Bodies = await waitFor("bob-device-2 to decrypt history", async () => {
            const bodies = await decryptedBodies(bob2, roomId);
            return bodies && MESSAGES.every((m) => bodies.includes(m)) ? bodies : null;
        });
        checkAllDecrypted("bob-device-2", bob2Bodies);
        log("bob-device-2 decrypted history:", JSON.stringify(bob2Bodies));

        // Nothing anywhere stayed undecryptable, and the devices that were there when the messages
        // were sent never failed to decrypt even once.
        for (const client of clients) {
            checkAllDecrypted(client.label, (await decryptedBodies(client, roomId)) || []);
        }
        for (const client of [alice, bob]) {
            if (client.utds.length) throw new Error(`${client.label} saw undecryptable events ${client.utds}`);
        }
        log("OK");
    } finally {
        for (const client of clients) client.stopClient();
    }
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error("E2EE TEST FAILED:", err?.stack || err);
        process.exit(1);
    },
);
