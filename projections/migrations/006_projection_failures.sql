-- A projection that cannot apply a batch says so here, in its own transaction, so that every
-- process (the API's /ready and /metrics, `pearl projections status`) can see it; the row is
-- removed by the batch that moves the checkpoint again.
CREATE TABLE IF NOT EXISTS projection_failure (
    name            text PRIMARY KEY,          -- the checkpoint (projection_checkpoint.name)
    projection      text NOT NULL,             -- the read model whose handler failed
    position        bigint NOT NULL,           -- the event-store position it could not apply
    error           text NOT NULL,
    attempts        bigint NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now()
);
