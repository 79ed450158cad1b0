"""`generate_config_yaml`: a commented homeserver.yaml listing every supported key with its default.

Loading the output gives the same configuration as loading no file at all (a unit test checks
this), so operators can start from it and change only what they need.
"""

from __future__ import annotations

import json
from string import Template

_TEMPLATE = Template(
    """\
# homeserver.yaml: configuration of the homeserver.
#
# Key names and shapes follow Synapse's homeserver.yaml, so an existing Synapse config
# mostly works as is; keys we do not implement are listed in ONE warning at startup.
# Every supported key is shown below with its default. Sizes take K/M/G/T suffixes
# ("50M"); durations take ms/s/m/h/d/w/y suffixes ("5m"), a bare number is milliseconds.
# Any key can also be set from the environment: HOMESERVER__<KEY>__<SUBKEY>=<yaml value>.
# Full reference: docs/configuration.md

## Server ##

# The domain in user ids (@alice:<server_name>) and room aliases. Cannot change later.
server_name: $server_name

# Where the server keeps its database, signing key and media by default.
data_dir: $data_dir

# The URL clients use to reach this server (through your reverse proxy), e.g.
# "https://matrix.example.com/". Unset: derived from the first listener serving `client`
# (http://127.0.0.1:8008/ here); setting it also serves /.well-known/matrix/client.
#public_baseurl: "https://matrix.example.com/"

# Serve /.well-known/matrix/server pointing federation at public_baseurl's host and port 443.
serve_server_wellknown: false

# Write the process id here at startup.
#pid_file: $data_dir_pid

# Open-file soft limit to set at start (each connection needs one); 0 = raise it to the hard limit.
soft_file_limit: 0

# Name of this process among workers (scale-out); the single process is "main".
instance_name: main

# Contact shown in "server is over its limits" errors, e.g. "mailto:admin@example.com".
#admin_contact: "mailto:admin@example.com"

# Room version for new rooms.
default_room_version: "11"

# Log level when no log_config is given: DEBUG, INFO, WARNING, ERROR or CRITICAL.
log_level: INFO

# A Python logging dictConfig YAML file (Synapse's log.config works as is). Overrides log_level.
#log_config: "/etc/homeserver/log.config"

# Sockets to listen on. Behind a reverse proxy set x_forwarded: true. `tls: true` serves HTTPS
# with tls_certificate_path / tls_private_key_path (typical for a federation listener on 8448).
# Resource names: client, federation (includes keys), keys, media, openid, health, metrics,
# replication. Without bind_addresses a listener binds "::" and "0.0.0.0".
listeners:
  - port: 8008
    type: http
    tls: false
    bind_addresses: ["127.0.0.1"]
    x_forwarded: false
    resources:
      - names: [client, federation, keys, media, openid, health, metrics]
        compress: false

# Serve Prometheus metrics at /metrics on listeners that list the `metrics` resource
# (or on `type: metrics` listeners).
enable_metrics: false

# Largest accepted request body for non-media endpoints (media uses max_upload_size).
max_request_body_size: 12800K

# Outbound requests (federation, push gateways, URL previews) never go to these ranges.
# 0.0.0.0 and :: are always blocked.
ip_range_blacklist:
  - "127.0.0.0/8"
  - "10.0.0.0/8"
  - "172.16.0.0/12"
  - "192.168.0.0/16"
  - "100.64.0.0/10"
  - "192.0.0.0/24"
  - "169.254.0.0/16"
  - "192.88.99.0/24"
  - "198.18.0.0/15"
  - "192.0.2.0/24"
  - "198.51.100.0/24"
  - "203.0.113.0/24"
  - "224.0.0.0/4"
  - "::1/128"
  - "fe80::/10"
  - "fc00::/7"
  - "2001:db8::/32"
  - "ff00::/8"
  - "fec0::/10"
# Exceptions to ip_range_blacklist.
ip_range_whitelist: []

# Federate only with these servers (unset: with everyone).
#federation_domain_whitelist:
#  - example.com

## Federation transport (see docs/federation.md) ##

# Certificate (PEM, leaf first then the chain) and key for listeners with `tls: true`.
#tls_certificate_path: "/etc/homeserver/fullchain.pem"
#tls_private_key_path: "/etc/homeserver/privkey.pem"

# Check other servers' certificates (only ever turn this off in tests).
federation_verify_certificates: true

# Trust these CA certificates (PEM files) instead of the system's for federation.
#federation_custom_ca_list:
#  - /etc/homeserver/my-ca.pem

# Answer other servers' profile lookups (GET /_matrix/federation/v1/query/profile).
allow_profile_lookup_over_federation: true

# Send outbound federation transactions from this process (queues persist while it is off).
send_federation: true

# Keys this server used to sign with, published as expired so old signatures still verify.
#old_signing_keys:
#  "ed25519:id": { key: "base64+public+key", expired_ts: 123456789123 }

# Backoff for servers that cannot be reached: the first retry after the minimum, each further
# failure multiplies the wait, up to the maximum. client_timeout caps one outbound request.
# max_queued_pdus: PDUs kept per unreachable server before it falls back to catch-up mode.
federation:
  destination_min_retry_interval: 10m
  destination_retry_multiplier: 2
  destination_max_retry_interval: 7d
  client_timeout: 60s
  max_queued_pdus: 1000

## Signing keys ##

# This server's ed25519 signing key; generated on first start if missing.
signing_key_path: $signing_key_path

# How long other servers may cache our keys.
key_refresh_interval: 1d

# Notary servers asked for other servers' keys. Empty: fetch keys from each server directly.
# Synapse's generated config uses matrix.org:
#   trusted_key_servers:
#     - server_name: "matrix.org"
trusted_key_servers: []

## Database ##

# SQLite (embedded) or PostgreSQL (scale-out), in Synapse's shape. PostgreSQL example:
#   database:
#     name: psycopg2
#     args:
#       user: synapse_user
#       password: secretpassword
#       database: synapse
#       host: localhost
#       port: 5432
#       cp_min: 5
#       cp_max: 10
database:
  name: sqlite3
  args:
    database: $sqlite_path
    cp_min: 5
    cp_max: 10

## Redis (scale-out only: stream positions and cache invalidation between processes) ##

redis:
  enabled: false
  host: localhost
  port: 6379
  #password: secret
  #password_path: /run/secrets/redis_password
  #dbid: 0
  use_tls: false

## Workers (docs/scale-out.md): shared by every process; a worker's own file adds its role ##

#worker_replication_secret: a-long-random-string
#instance_map:
#  main: {host: 127.0.0.1, port: 9093}    # main's listener with `replication` and `client`
#worker_main_url: http://127.0.0.1:9093   # the same, shorter
#pusher_instances: [pusher1]              # main leaves push delivery to these workers
#federation_sender_instances: [federation_sender1]  # main leaves outbound federation to it
#notify_appservices_from_worker: appservice1
#run_background_tasks_on: background1
# In a worker's file only:
#worker_app: synapse.app.generic_worker   # or a role: client_reader, pusher, media...
#worker_role: client_reader               # the role of a generic_worker
#worker_name: reader1

## Registration and sessions ##

enable_registration: false
# Required with enable_registration unless registration_requires_token is set.
enable_registration_without_verification: false
registration_requires_token: false
allow_guest_access: false

# Shared secret for /_synapse/admin/v1/register (register_new_matrix_user, homeserver register-user).
$shared_secret_line
# ...or read it from a file:
#registration_shared_secret_path: /run/secrets/registration_shared_secret

bcrypt_rounds: 12
# Rooms new local users join automatically, e.g. ["#welcome:example.com"].
auto_join_rooms: []
enable_set_displayname: true
enable_set_avatar_url: true

# How long a login stays valid (unset: forever).
#session_lifetime: 24h
# Lifetime of access tokens for clients that asked for a refresh token (null: no refresh tokens).
refreshable_access_token_lifetime: 5m
# Lifetime of access tokens for clients that did not (unset: session_lifetime).
#nonrefreshable_access_token_lifetime: 24h
# Lifetime of refresh tokens (unset: session_lifetime).
#refresh_token_lifetime: 24h

## Rate limiting ##
# Token buckets: burst_count actions at once, refilled at per_second; per_second: 0 disables.

rc_message:
  per_second: 0.2
  burst_count: 10
rc_registration:
  per_second: 0.17
  burst_count: 3
rc_registration_token_validity:
  per_second: 0.1
  burst_count: 5
# rc_login.address is far above Synapse's 0.003/5: a school or office behind one NAT address
# (or users behind a proxy without x_forwarded) share it. The per-account limits protect accounts.
rc_login:
  address:
    per_second: 1
    burst_count: 100
  account:
    per_second: 0.003
    burst_count: 5
  failed_attempts:
    per_second: 0.17
    burst_count: 3
rc_joins:
  local:
    per_second: 0.1
    burst_count: 10
  remote:
    per_second: 0.01
    burst_count: 10
rc_joins_per_room:
  per_second: 1
  burst_count: 10
rc_invites:
  per_room:
    per_second: 0.3
    burst_count: 10
  per_user:
    per_second: 0.003
    burst_count: 5
  per_issuer:
    per_second: 0.3
    burst_count: 10
rc_room_creation:
  per_second: 0.016
  burst_count: 10
rc_media_create:
  per_second: 10
  burst_count: 50
# URL previews, per user.
rc_url_preview:
  per_second: 1
  burst_count: 10
rc_key_requests:
  per_second: 20
  burst_count: 100
rc_presence:
  per_user:
    per_second: 0.1
    burst_count: 1
rc_reports:
  per_second: 1
  burst_count: 5
rc_user_directory:
  per_second: 0.016
  burst_count: 200
rc_delayed_event_mgmt:
  per_second: 1
  burst_count: 5
# Redactions by server admins (unset: admins are not rate limited for redactions).
#rc_admin_redaction:
#  per_second: 1
#  burst_count: 50
rc_federation:
  window_size: 1000
  sleep_limit: 10
  sleep_delay: 500
  reject_limit: 50
  concurrent: 3

## Media ##

enable_media_repo: true
enable_authenticated_media: true
media_store_path: $media_store_path
max_upload_size: 50M
max_image_pixels: 32M
dynamic_thumbnails: false
thumbnail_sizes:
  - width: 32
    height: 32
    method: crop
  - width: 96
    height: 96
    method: crop
  - width: 320
    height: 240
    method: scale
  - width: 640
    height: 480
    method: scale
  - width: 800
    height: 600
    method: scale
url_preview_enabled: false
# URL previews never fetch from these ranges (0.0.0.0 and :: always blocked).
url_preview_ip_range_blacklist:
  - "127.0.0.0/8"
  - "10.0.0.0/8"
  - "172.16.0.0/12"
  - "192.168.0.0/16"
  - "100.64.0.0/10"
  - "192.0.0.0/24"
  - "169.254.0.0/16"
  - "192.88.99.0/24"
  - "198.18.0.0/15"
  - "192.0.2.0/24"
  - "198.51.100.0/24"
  - "203.0.113.0/24"
  - "224.0.0.0/4"
  - "::1/128"
  - "fe80::/10"
  - "fc00::/7"
  - "2001:db8::/32"
  - "ff00::/8"
  - "fec0::/10"
url_preview_ip_range_whitelist: []
# URLs never previewed: each entry maps URL components to a glob (or a regex starting with ^).
url_preview_url_blacklist: []
url_preview_accept_language: [en]
# Largest body a URL preview downloads.
max_spider_size: 10M
# false: the legacy /_matrix/media/*/download and /thumbnail endpoints require an access token.
allow_legacy_unauthenticated_media: true
# Per-user upload quotas, e.g. [{time_period: 1d, max_size: 1G}].
media_upload_limits: []
# /media/v1/create ids a user may hold before uploading, and how long they wait.
max_pending_media_uploads: 5
unused_expiration_time: 24h
# Virus-scan every upload with clamd (INSTREAM) before it can be downloaded. Set clamd's
# StreamMaxLength to at least max_upload_size. fail_closed refuses uploads while clamd is down.
#clamd:
#  socket: /run/clamav/clamd.ctl
#  #host: 127.0.0.1
#  #port: 3310
#  timeout: 60s
#  fail_closed: true

## Rooms ##

# Turn on encryption in new rooms: all, invite (private chats only) or off.
encryption_enabled_by_default_for_room_type: "off"

# Who may publish rooms to the public room list; first matching rule wins, no match denies.
# Empty (the default since Synapse 1.126): nobody, except through the admin API. Allow all:
#   room_list_publication_rules:
#     - action: allow
room_list_publication_rules: []
# Who may create room aliases (same rule format).
alias_creation_rules:
  - user_id: "*"
    alias: "*"
    room_id: "*"
    action: allow
enable_room_list_search: true
allow_public_rooms_without_auth: true
allow_public_rooms_over_federation: false
block_non_admin_invites: false
enable_search: true
filter_timeline_limit: 100
forget_rooms_on_leave: false
# How long redacted events keep their original content (null: forever).
redaction_retention_period: 7d
# How long client IPs and user agents are kept (null: forever).
user_ips_max_age: 28d
# How long audit log records are kept (unset or null: forever); see docs/admin.md.
#audit_log_retention_period: 365d
# Also record admins reading rooms through the admin API in the audit log.
audit_log_admin_room_reads: false

user_directory:
  enabled: true
  search_all_users: false
  prefer_local_users: false
  exclude_remote_users: false

presence:
  enabled: true

require_auth_for_profile_requests: false
limit_profile_requests_to_users_who_share_rooms: false
# Creating an alias for a room needs membership in it.
require_membership_for_aliases: true

# Server notices (admin API send_server_notice / broadcast_server_notice): off unless a system
# user localpart is set. Each user gets a private room with the system user that they can read
# but not write in, tagged m.server_notice.
#server_notices:
#  system_mxid_localpart: notices
#  system_mxid_display_name: Server Notices
#  system_mxid_avatar_url: mxc://example.com/notices
#  room_name: Server Notices
#  room_avatar_url: mxc://example.com/notices-room
#  room_topic: Messages from the server administrators
#  auto_join: false

## Retention and compliance ##

# Message retention (MSC1763, docs/retention-erasure.md). Non-state events older than the room's
# max_lifetime (its m.room.retention, else default_policy, capped into the allowed range) are
# hidden from clients at once and deleted by the purge jobs. export_dir (ours): expired events
# are appended there as JSON lines, one file per room, before they are deleted.
#retention:
#  enabled: true
#  default_policy:
#    min_lifetime: 1d
#    max_lifetime: 30d
#  allowed_lifetime_min: 1d
#  allowed_lifetime_max: 1y
#  purge_jobs:
#    - longest_max_lifetime: 3d
#      interval: 12h
#    - shortest_max_lifetime: 3d
#      interval: 1d
#  export_dir: /var/lib/homeserver/retention-archive

# Regexes masked with '*' in search results (highlights and result bodies), e.g. phone numbers.
#search_mask_patterns:
#  - '01[016789]-?\\d{3,4}-?\\d{4}'

## Signing in with the organisation's accounts (docs/sign-in.md) ##

# LDAP / Active Directory passwords: the matrix-synapse-ldap3 block, unchanged.
# (The legacy `password_providers:` list with ldap_auth_provider.LdapAuthProvider works too.)
#modules:
#  - module: "ldap_auth_provider.LdapAuthProviderModule"
#    config:
#      enabled: true
#      uri: "ldap://ldap.example.com:389"
#      start_tls: true
#      base: "ou=people,dc=example,dc=com"
#      attributes: {uid: "uid", mail: "mail", name: "cn"}
#      bind_dn: "cn=matrix,ou=services,dc=example,dc=com"
#      bind_password: "<secret>"
#      filter: "(memberOf=cn=matrix-users,ou=groups,dc=example,dc=com)"
#password_providers: []

# OpenID Connect single sign-on (Keycloak, Azure AD, Google...), as Synapse's oidc_providers.
#oidc_providers:
#  - idp_id: keycloak
#    idp_name: "School account"
#    issuer: "https://sso.example.com/realms/school"
#    client_id: "matrix"
#    client_secret: "<secret>"
#    scopes: ["openid", "profile", "email"]
#    user_mapping_provider:
#      config:
#        localpart_template: "{{ user.preferred_username }}"
#        display_name_template: "{{ user.name }}"
#        email_template: "{{ user.email }}"
#    # Only users whose `groups` claim contains "staff" (see docs/sign-in.md):
#    #attribute_requirements:
#    #  - attribute: groups
#    #    value: staff
# Client URLs a login token may go to without a confirmation page (prefixes); whether the
# provider's display name replaces the user's at every login.
#sso:
#  client_whitelist: ["https://element.example.com/"]
#  update_profile_information: false
# Let a signed-in device sign in another (POST /login/get_token, MSC3882).
#login_via_existing_session:
#  enabled: false
#  require_ui_auth: true
#  token_timeout: 5m

## Moderation ##

# Refuse (or redact) messages, room names and topics containing these words. Case-insensitive;
# Latin-script words match whole words, Korean/CJK words match anywhere in the text.
# action: reject (403 M_FORBIDDEN) or redact (accepted, then redacted at once).
# words_file: one word per line (# comments). Enabled by default once words are listed.
word_filter:
  enabled: false
  words: []
  #words_file: /etc/homeserver/blocked_words.txt
  action: reject
  exempt_admins: true

# Who may create rooms: everyone, or admins only (direct chats stay allowed with
# allow_direct_messages).
room_creation:
  allow: everyone
  allow_direct_messages: true

## Push notifications (docs/push.md) ##

# Delivery to the pushers clients register (push gateways, email). Push gateway URLs are
# outbound requests: a gateway on a private address needs it in ip_range_whitelist.
# include_content: send message content to gateways (pushers with format event_id_only never
# get it). group_unread_count_by_room: the badge counts rooms with unread notifications (plus
# invites) rather than messages. gateway_timeout: seconds one POST may take.
push:
  enabled: true
  include_content: true
  group_unread_count_by_room: true
  gateway_timeout: 90

# The push gateway (bridges/push_gateway, Sygnal-compatible) served by this process at
# /_matrix/push/v1/notify, so one process is enough: its Sygnal-format settings (apps: ...)
# inline here or in config_file. Pushers then use this server's own URL (a loopback or private
# address must be in ip_range_whitelist).
push_gateway:
  enabled: false
  #config_file: /etc/homeserver/sygnal.yaml
  #apps:
  #  org.example.web:
  #    type: webpush
  #    vapid_private_key: /etc/homeserver/vapid_private.pem
  #    vapid_contact_email: ops@example.com

# Notification emails: a digest of unread messages once they waited unread for notif_delay.
# Users add an email pusher for an address of their account; notif_for_new_users adds one for
# accounts created with an email address. client_base_url: where room links in emails point.
email:
  enable_notifs: false
  #notif_from: "%(app)s <noreply@example.com>"
  app_name: Matrix
  smtp_host: localhost
  smtp_port: 25
  #smtp_user: "mailer"
  #smtp_pass: "<password>"
  # STARTTLS required (require_transport_security), used when offered (enable_tls), or
  # implicit TLS on connect (force_tls, usually port 465).
  require_transport_security: false
  enable_tls: true
  force_tls: false
  notif_for_new_users: true
  client_base_url: "https://matrix.to"
  notif_delay: 10m

## VoIP: TURN servers handed to clients (GET /voip/turnServer) ##

turn_uris: []
#  - "turn:turn.example.com:3478?transport=udp"
# coturn's static-auth-secret (use-auth-secret): time-limited credentials per user...
#turn_shared_secret: "<coturn static-auth-secret>"
# ...or fixed credentials:
#turn_username: "turnuser"
#turn_password: "turnpassword"
turn_user_lifetime: 1h

## Application services ##

# Registration files of application services (bridges, bots).
app_service_config_files: []
"""
)


def generate_config_yaml(
    server_name: str = "localhost",
    data_dir: str = "./data",
    registration_shared_secret: str | None = None,
) -> str:
    """A commented homeserver.yaml with every supported key at its default."""

    def q(value: str) -> str:  # a JSON string is a valid double-quoted YAML scalar
        return json.dumps(value)

    secret_line = (
        f"registration_shared_secret: {q(registration_shared_secret)}"
        if registration_shared_secret
        else '#registration_shared_secret: "<a long random string>"'
    )
    return _TEMPLATE.substitute(
        server_name=q(server_name),
        data_dir=q(data_dir),
        data_dir_pid=q(f"{data_dir}/homeserver.pid"),
        signing_key_path=q(f"{data_dir}/{server_name}.signing.key"),
        sqlite_path=q(f"{data_dir}/homeserver.db"),
        media_store_path=q(f"{data_dir}/media_store"),
        shared_secret_line=secret_line,
    )
