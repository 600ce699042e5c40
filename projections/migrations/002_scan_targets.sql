-- Scan targets and scan jobs (projections/targets.py). Idempotent; rebuilt from the event store.
CREATE TABLE IF NOT EXISTS scan_target_view (
    id              uuid PRIMARY KEY,
    org             text NOT NULL,
    project_id      uuid NOT NULL,
    name            text NOT NULL,
    kind            text NOT NULL,
    location        text NOT NULL,
    scanners        jsonb NOT NULL,
    schedule        text,
    rules           text,
    branch          text NOT NULL,
    timeout_seconds integer NOT NULL,
    status          text NOT NULL,            -- active | removed
    registered_at   timestamptz NOT NULL,
    registered_by   text NOT NULL,
    updated_at      timestamptz NOT NULL,
    last_job_id     uuid,
    last_job_status text,
    last_requested_at timestamptz,
    last_slot       timestamptz,              -- last schedule slot jobs were requested for
    version         integer NOT NULL,
    position        bigint NOT NULL,
    UNIQUE (project_id, name)
);
CREATE INDEX IF NOT EXISTS scan_target_view_project ON scan_target_view (org, project_id, name);
CREATE INDEX IF NOT EXISTS scan_target_view_scheduled ON scan_target_view (status)
    WHERE schedule IS NOT NULL;

CREATE TABLE IF NOT EXISTS scan_job_view (
    id              uuid PRIMARY KEY,
    org             text NOT NULL,
    project_id      uuid NOT NULL,
    target_id       uuid NOT NULL,
    target_name     text NOT NULL,
    scanner         text NOT NULL,
    kind            text NOT NULL,
    location        text NOT NULL,
    trigger         text NOT NULL,            -- manual | schedule
    slot            timestamptz,
    status          text NOT NULL,            -- queued | running | retry_wait | succeeded | failed | cancelled
    attempt         integer NOT NULL,
    requested_at    timestamptz NOT NULL,
    requested_by    text NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    retry_at        timestamptz,
    last_error      text,
    scan_id         uuid,
    counts          jsonb,
    tool_version    text,
    version         integer NOT NULL,
    position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS scan_job_view_project ON scan_job_view (org, project_id, position);
CREATE INDEX IF NOT EXISTS scan_job_view_target ON scan_job_view (target_id, position);
