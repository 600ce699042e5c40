-- SLA breaches recorded by the scheduler (finding.sla_breached events).
ALTER TABLE finding_view ADD COLUMN IF NOT EXISTS sla_breached_at timestamptz;
CREATE INDEX IF NOT EXISTS finding_view_sla_due ON finding_view (sla_due)
    WHERE status IN ('open', 'reopened') AND sla_breached_at IS NULL AND sla_due IS NOT NULL;
