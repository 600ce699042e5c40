-- Read models and the audit trail. Every row carries its org; every table is rebuilt from the
-- event store by `pearl projections rebuild`.
CREATE TABLE IF NOT EXISTS projection_checkpoint (
    name        text PRIMARY KEY,
    position    bigint NOT NULL DEFAULT 0,   -- last event-store position applied
    stream_seq  bigint                       -- last JetStream stream sequence applied (NULL after rebuild)
);

CREATE TABLE IF NOT EXISTS aggregate_scope (
    aggregate_id uuid PRIMARY KEY,
    org          text NOT NULL,
    aggregate    text NOT NULL,
    project_id   uuid
);

CREATE TABLE IF NOT EXISTS org_view (
    org        text PRIMARY KEY,
    id         uuid NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    position   bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS project_view (
    id           uuid PRIMARY KEY,
    org          text NOT NULL,
    slug         text NOT NULL,
    name         text NOT NULL,
    environments jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    position     bigint NOT NULL,
    UNIQUE (org, slug)
);

CREATE TABLE IF NOT EXISTS finding_view (
    id            uuid PRIMARY KEY,
    org           text NOT NULL,
    project_id    uuid NOT NULL,
    fingerprint   text NOT NULL,
    tool          text NOT NULL,
    sources       jsonb NOT NULL,
    rule_id       text NOT NULL,
    title         text NOT NULL,
    severity      text NOT NULL,
    status        text NOT NULL,
    path          text,
    line          integer,
    details       jsonb NOT NULL,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    scan_count    integer NOT NULL,
    sla_due       timestamptz,
    justification text,
    version       integer NOT NULL,
    position      bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS finding_view_project ON finding_view (org, project_id, position);
CREATE INDEX IF NOT EXISTS finding_view_filters ON finding_view (project_id, status, severity);

CREATE TABLE IF NOT EXISTS audit_log (
    position          bigint PRIMARY KEY,
    org               text NOT NULL,
    seq               bigint NOT NULL,          -- 1, 2, 3 … within the org's chain
    event_id          uuid NOT NULL UNIQUE,
    type              text NOT NULL,
    aggregate         text NOT NULL,
    aggregate_id      uuid NOT NULL,
    aggregate_version integer NOT NULL,
    project_id        uuid,
    actor             text NOT NULL,
    actor_kind        text NOT NULL,
    occurred_at       timestamptz NOT NULL,
    data              jsonb NOT NULL,
    trace_id          text,
    prev_hash         text NOT NULL,
    hash              text NOT NULL,
    UNIQUE (org, seq)
);
CREATE INDEX IF NOT EXISTS audit_log_org ON audit_log (org, position);
CREATE INDEX IF NOT EXISTS audit_log_project ON audit_log (org, project_id, position);

CREATE TABLE IF NOT EXISTS audit_chain_head (
    org      text PRIMARY KEY,
    seq      bigint NOT NULL,
    position bigint NOT NULL,
    hash     text NOT NULL
);

CREATE TABLE IF NOT EXISTS scan_view (
    id           uuid PRIMARY KEY,
    org          text NOT NULL,
    project_id   uuid NOT NULL,
    tool         text NOT NULL,
    tool_version text,
    format       text NOT NULL,
    target       text NOT NULL,
    branch       text NOT NULL,
    full_scan    boolean NOT NULL,
    digest       text NOT NULL,
    size         bigint NOT NULL,
    counts       jsonb NOT NULL,
    submitted_at timestamptz NOT NULL,
    actor        text NOT NULL,
    position     bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS scan_view_project ON scan_view (org, project_id, position);

CREATE TABLE IF NOT EXISTS api_key_view (
    id           uuid PRIMARY KEY,
    key_id       text NOT NULL UNIQUE,
    org          text NOT NULL,
    name         text NOT NULL,
    roles        jsonb NOT NULL,
    expires_at   timestamptz,
    revoked      boolean NOT NULL DEFAULT false,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    version      integer NOT NULL
);
CREATE INDEX IF NOT EXISTS api_key_view_org ON api_key_view (org, created_at);
