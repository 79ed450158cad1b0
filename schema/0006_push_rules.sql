-- Push rules (client-server "Push Rules"). Server-default rules live in code
-- (homeserver/push/default_rules.py); these tables hold what a user changed.

-- User-defined rules. Within (user_id, kind) a higher priority is more important. conditions
-- (override/underride) and actions are JSON arrays; pattern is set for content rules only.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    conditions TEXT,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A user's settings of server-default rules: NULL keeps the default.
CREATE TABLE push_rule_settings (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled BOOLEAN,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);
