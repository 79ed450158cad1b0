// matrix-js-sdk signs in with a password and checks who it is (used with LDAP passwords: the
// client does nothing special, the server asks the directory).
// Usage: node password_login.mjs  (env: HS_BASE_URL, LOGIN_USER, LOGIN_PASSWORD, EXPECT_USER_ID)
import * as sdk from "matrix-js-sdk";

const client = sdk.createClient({ baseUrl: process.env.HS_BASE_URL });
const res = await client.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: process.env.LOGIN_USER },
    password: process.env.LOGIN_PASSWORD,
    initial_device_display_name: "js-sdk",
});
const authed = sdk.createClient({
    baseUrl: process.env.HS_BASE_URL,
    accessToken: res.access_token,
    userId: res.user_id,
    deviceId: res.device_id,
});
const who = await authed.whoami();
if (who.user_id !== process.env.EXPECT_USER_ID) {
    console.error(`signed in as ${who.user_id}, expected ${process.env.EXPECT_USER_ID}`);
    process.exit(1);
}
const profile = await authed.getProfileInfo(who.user_id);
console.log(`OK ${who.user_id} ${profile.displayname}`);
