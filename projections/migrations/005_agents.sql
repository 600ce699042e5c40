-- Agents and remediation task packets (projections/agents.py). Idempotent; rebuilt from the
-- event store like every other read model. `version_no` is the aggregate version last
-- applied and guards every update; `position` is the store position of the creating event.

CREATE TABLE IF NOT EXISTS agent_view (
    id            uuid PRIMARY KEY,
    org           text NOT NULL,
    slug          text NOT NULL,
    name          text NOT NULL,
    owner         text NOT NULL,
    capabilities  jsonb NOT NULL,
    autonomy      jsonb NOT NULL,
    paused        boolean NOT NULL DEFAULT false,
    pause_reason  text,
    registered_at timestamptz NOT NULL,
    registered_by text NOT NULL,
    updated_at    timestamptz NOT NULL,
    version_no    integer NOT NULL,
    position      bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS agent_view_slug ON agent_view (org, slug);

CREATE TABLE IF NOT EXISTS task_view (
    id               uuid PRIMARY KEY,
    org              text NOT NULL,
    project_id       uuid NOT NULL,
    key              text NOT NULL,
    title            text NOT NULL,
    status           text NOT NULL,
    priority         text NOT NULL,
    severity         text NOT NULL,
    due              timestamptz,
    finding_ids      uuid[] NOT NULL,
    fingerprints     text[] NOT NULL,
    remaining        text[] NOT NULL,
    targets          jsonb NOT NULL,
    spec             jsonb NOT NULL,
    guard_rails      jsonb NOT NULL,
    holder           text,
    lease_expires_at timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    outcome          jsonb,
    last_event       text NOT NULL,
    created_at       timestamptz NOT NULL,
    created_by       text NOT NULL,
    updated_at       timestamptz NOT NULL,
    version_no       integer NOT NULL,
    position         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS task_view_project ON task_view (project_id, status, priority, position);
CREATE INDEX IF NOT EXISTS task_view_holder ON task_view (holder) WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS task_view_findings ON task_view USING gin (finding_ids);
