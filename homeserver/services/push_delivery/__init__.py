"""Push delivery: the homeserver's http and email pushers (docs/push.md).

`pool.PusherPool` runs one small worker per pusher; `http_pusher` POSTs notifications to push
gateways, `email_pusher` mails digests through `mailer`. Push actions are computed at persistence
(services/notifications.py); this package only delivers them, from each pusher's persisted position.
"""
