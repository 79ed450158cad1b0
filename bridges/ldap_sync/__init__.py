"""LDAP directory sync: people, org units and groups of an LDAP directory mirrored into accounts,
a space tree with one default room per unit, room memberships and power levels.

Modules, one job each: `config` (YAML), `directory` (reads LDAP, all of it, before any change),
`model` (what the homeserver should look like), `homeserver` (HTTP calls as the appservice bot),
`state` (the bridge's own SQLite), `planner` (desired vs current -> actions), `executor` (applies
actions with progress), `sync` (one run). See docs/directory-sync.md.
"""
