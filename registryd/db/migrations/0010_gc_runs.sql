-- 0010: a record of each garbage collection run, for the admin pages.

CREATE TABLE gc_runs (
    run_id       bigserial PRIMARY KEY,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    trigger      text NOT NULL CHECK (trigger IN ('server', 'command')),
    dry_run      boolean NOT NULL,
    finished     boolean NOT NULL,           -- false: stopped at gc_max_seconds
    counts       jsonb NOT NULL               -- Report.counts()
);
