-- Governance read models (projections/governance.py): policies, versions, test results,
-- promotions and their gate decisions, environments and releases, approvals, exceptions.
-- Idempotent; rebuilt from the event store like every other read model.
ALTER TABLE project_view ADD COLUMN IF NOT EXISTS profile jsonb NOT NULL
    DEFAULT '{"criticality": "medium", "data_classification": "internal", "internet_facing": false, "owner_team": null}';
-- The store position of the last profile_set applied (0: the default profile); guards replays.
ALTER TABLE project_view ADD COLUMN IF NOT EXISTS profile_position bigint NOT NULL DEFAULT 0;
ALTER TABLE scan_view ADD COLUMN IF NOT EXISTS commit_sha text;
CREATE INDEX IF NOT EXISTS scan_view_commit ON scan_view (project_id, commit_sha);
CREATE INDEX IF NOT EXISTS finding_view_open ON finding_view (project_id)
    WHERE status IN ('open', 'reopened');

-- In the tables of one aggregate each, `position` is the store position of the event that
-- created the row (a stable order for keyset pagination); `version_no` (or `version`) is the
-- aggregate version last applied, which guards every update so a replay changes nothing.

CREATE TABLE IF NOT EXISTS gate_policy_view (
    id              uuid PRIMARY KEY,
    org             text NOT NULL,
    project_id      uuid,                    -- NULL: the org baseline
    environment     text NOT NULL,
    current_version integer NOT NULL DEFAULT 0,
    current_digest  text,
    updated_at      timestamptz,
    created_by      text NOT NULL,
    version_no      integer NOT NULL,
    position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_policy_view_scope ON gate_policy_view (org, project_id, environment);

CREATE TABLE IF NOT EXISTS policy_version_view (
    policy_id    uuid NOT NULL,
    version      integer NOT NULL,
    org          text NOT NULL,
    project_id   uuid,                       -- NULL: the org baseline
    environment  text NOT NULL,
    document     jsonb NOT NULL,
    digest       text NOT NULL,
    reason       text NOT NULL,
    author       text NOT NULL,
    created_at   timestamptz NOT NULL,
    position     bigint NOT NULL,
    PRIMARY KEY (policy_id, version)
);
CREATE INDEX IF NOT EXISTS policy_version_view_scope
    ON policy_version_view (org, project_id, environment, version);

CREATE TABLE IF NOT EXISTS release_version_view (
    id              uuid PRIMARY KEY,
    org             text NOT NULL,
    project_id      uuid NOT NULL,
    version         text NOT NULL,
    commit_sha      text NOT NULL,
    artifact_digest text,
    digest          text NOT NULL,
    author          text,
    registered_at   timestamptz NOT NULL,
    registered_by   text NOT NULL,
    position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS release_version_view_project
    ON release_version_view (org, project_id, position);

CREATE TABLE IF NOT EXISTS test_run_view (
    id           uuid PRIMARY KEY,
    org          text NOT NULL,
    project_id   uuid NOT NULL,
    commit_sha   text NOT NULL,
    suite        text NOT NULL,
    passed       integer NOT NULL,
    failed       integer NOT NULL,
    skipped      integer NOT NULL,
    coverage     double precision,
    submitted_at timestamptz NOT NULL,
    submitted_by text NOT NULL,
    position     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS test_run_view_commit ON test_run_view (project_id, commit_sha);

CREATE TABLE IF NOT EXISTS promotion_view (
    id                  uuid PRIMARY KEY,
    org                 text NOT NULL,
    project_id          uuid NOT NULL,
    version             text NOT NULL,
    commit_sha          text NOT NULL,
    version_digest      text NOT NULL,
    from_environment    text,
    to_environment      text NOT NULL,
    author              text,
    reason              text NOT NULL,
    status              text NOT NULL,   -- pending | passed | failed | awaiting_approval | promoted | rejected
    requested_by        text NOT NULL,
    requested_at        timestamptz NOT NULL,
    evaluations         integer NOT NULL DEFAULT 0,
    last_decision_id    uuid,
    last_result         text,
    last_evaluated_at   timestamptz,
    approval_request_id uuid,
    closed_at           timestamptz,
    close_reason        text,
    closed_by           text,
    version_no          integer NOT NULL,
    position            bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS promotion_view_project ON promotion_view (org, project_id, position);
CREATE INDEX IF NOT EXISTS promotion_view_open ON promotion_view (project_id)
    WHERE status IN ('pending', 'passed', 'failed', 'awaiting_approval');

CREATE TABLE IF NOT EXISTS gate_decision_view (
    decision_id     uuid PRIMARY KEY,
    promotion_id    uuid NOT NULL,
    org             text NOT NULL,
    project_id      uuid NOT NULL,
    environment     text NOT NULL,
    seq             integer NOT NULL,    -- 1 for the first evaluation of the promotion
    result          text NOT NULL,
    inputs_digest   text NOT NULL,
    policy          jsonb NOT NULL,
    rules           jsonb NOT NULL,
    evaluated_at    timestamptz NOT NULL,
    as_of_position  bigint NOT NULL,
    trigger         text NOT NULL,
    actor           text NOT NULL,
    position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_decision_view_promotion ON gate_decision_view (promotion_id, seq);

CREATE TABLE IF NOT EXISTS environment_view (
    id                   uuid PRIMARY KEY,
    org                  text NOT NULL,
    project_id           uuid NOT NULL,
    name                 text NOT NULL,
    current_version      text,
    current_digest       text,
    current_commit       text,
    live_since           timestamptz,
    pending_promotion_id uuid,
    failed_digests       jsonb NOT NULL DEFAULT '[]',
    version              integer NOT NULL,
    position             bigint NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE IF NOT EXISTS release_view (
    environment_id uuid NOT NULL,
    seq            integer NOT NULL,        -- the environment aggregate's version
    org            text NOT NULL,
    project_id     uuid NOT NULL,
    environment    text NOT NULL,
    kind           text NOT NULL,           -- promoted | rolled_back
    version        text NOT NULL,
    digest         text NOT NULL,
    commit_sha     text NOT NULL,
    promotion_id   uuid,
    from_version   text,
    reason         text,
    at             timestamptz NOT NULL,
    actor          text NOT NULL,
    position       bigint NOT NULL,
    PRIMARY KEY (environment_id, seq)
);
CREATE INDEX IF NOT EXISTS release_view_project ON release_view (org, project_id, position);

CREATE TABLE IF NOT EXISTS approval_view (
    id              uuid PRIMARY KEY,
    org             text NOT NULL,
    project_id      uuid NOT NULL,
    promotion_id    uuid NOT NULL,
    number          integer NOT NULL,
    environment     text NOT NULL,
    version         text NOT NULL,
    version_digest  text NOT NULL,
    required_count  integer NOT NULL,
    roles           jsonb NOT NULL,
    requested_by    text NOT NULL,
    author          text,
    requested_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL,          -- pending | approved | rejected | expired | voided
    approvals       integer NOT NULL DEFAULT 0,
    decisions       jsonb NOT NULL DEFAULT '[]',
    comments        jsonb NOT NULL DEFAULT '[]',
    version_no      integer NOT NULL,
    position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_view_promotion ON approval_view (promotion_id, number);
CREATE INDEX IF NOT EXISTS approval_view_pending ON approval_view (expires_at)
    WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS exception_view (
    id                    uuid PRIMARY KEY,
    org                   text NOT NULL,
    project_id            uuid NOT NULL,
    environment           text,
    finding_ids           jsonb NOT NULL,
    rule_id               text,
    cwe                   text,
    justification         text NOT NULL,
    compensating_controls jsonb NOT NULL,
    requested_by          text NOT NULL,
    requested_at          timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    status                text NOT NULL,    -- requested | active | rejected | revoked | expired
    approved_by           text,
    decided_at            timestamptz,
    reason                text,
    version_no            integer NOT NULL,
    position              bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS exception_view_project ON exception_view (org, project_id, position);
CREATE INDEX IF NOT EXISTS exception_view_due ON exception_view (expires_at)
    WHERE status IN ('requested', 'active');
