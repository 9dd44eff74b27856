//! Versioned schema migrations, applied at start under an advisory lock so
//! that replicas starting together apply each one exactly once.

use deadpool_postgres::Client;
use sprinters_core::Result;

use super::pg_error;

/// Held while migrating; any constant unlikely to collide with the
/// application's own advisory locks.
const MIGRATION_LOCK: i64 = 0x5370_7269_6e74_6572; // "Sprinter"

/// The rows holding launch slots where a job `j` counts at `p_now`: the
/// claim function's filter (migration 6), and the query plan test's. Each
/// arm repeats a partial index's condition.
macro_rules! slot_holders {
    () => {
        "s.active AND (
                    (s.account_h = j.account_h AND s.slot_until IS NOT NULL
                        AND s.slot_until > p_now)
                    OR (s.owner_h = j.owner_h AND s.slot_until IS NOT NULL
                        AND s.slot_until > p_now)
                    OR (s.account_h = j.account_h AND s.extra_slots > 0)
                    OR (s.owner_h = j.owner_h AND s.extra_slots > 0))"
    };
}

/// [`slot_holders!`], for `EXPLAIN`.
pub(crate) const SLOT_HOLDERS: &str = slot_holders!();

/// The migrations, in order; a migration is never edited once released,
/// only followed by a new one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE sprinters_keyring (
    id smallint PRIMARY KEY CHECK (id = 1),
    check_sealed text NOT NULL,
    index_key_sealed text NOT NULL
);
CREATE TABLE sprinters_data_keys (
    id integer PRIMARY KEY,
    scope text NOT NULL,
    wrapped text,
    reserved bigint NOT NULL,
    active boolean NOT NULL
);
CREATE SEQUENCE sprinters_data_key_ids;
CREATE UNIQUE INDEX sprinters_data_keys_one_active ON sprinters_data_keys (scope) WHERE active;

CREATE TABLE sprinters_jobs (
    id bytea PRIMARY KEY,
    version bigint NOT NULL,
    sealed_version bigint NOT NULL,
    key_id integer NOT NULL,
    body bytea NOT NULL,
    queued_at bigint NOT NULL,
    state text NOT NULL,
    active boolean NOT NULL,
    owner_h bytea NOT NULL,
    account_h bytea,
    label_h bytea NOT NULL,
    lease_owner text,
    lease_expires bigint
);
CREATE INDEX sprinters_jobs_newest ON sprinters_jobs (queued_at DESC, id DESC);
CREATE INDEX sprinters_jobs_by_owner ON sprinters_jobs (owner_h, queued_at DESC, id DESC);
CREATE INDEX sprinters_jobs_by_account ON sprinters_jobs (account_h, queued_at DESC, id DESC);
CREATE INDEX sprinters_jobs_by_labels ON sprinters_jobs (label_h, queued_at DESC, id DESC);
CREATE INDEX sprinters_jobs_active ON sprinters_jobs (queued_at DESC, id DESC) WHERE active;
CREATE INDEX sprinters_jobs_purgeable ON sprinters_jobs (queued_at) WHERE NOT active;

CREATE TABLE sprinters_deliveries (
    id bytea PRIMARY KEY,
    received_at bigint NOT NULL
);
CREATE INDEX sprinters_deliveries_by_age ON sprinters_deliveries (received_at);

CREATE TABLE sprinters_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at bigint NOT NULL
);

CREATE TABLE sprinters_vault (
    id bytea PRIMARY KEY,
    account_h bytea NOT NULL,
    version bigint NOT NULL,
    key_id integer NOT NULL,
    body bytea NOT NULL
);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE sprinters_tenants (
    id bytea PRIMARY KEY,
    version bigint NOT NULL,
    key_id integer NOT NULL,
    body bytea NOT NULL
);
"#,
    ),
    (
        3,
        // The index of due work, so that a tick reads what is due and not
        // the history, and the active jobs of a label set by their own
        // index. A waiting job written before this migration is marked due
        // at once (its exact time is sealed in its body): the tick looks at
        // it until its next write sets the column.
        r#"
ALTER TABLE sprinters_jobs ADD COLUMN due_at bigint;
UPDATE sprinters_jobs SET due_at = COALESCE(lease_expires, 0)
    WHERE state IN ('queued', 'launching', 'launched');
CREATE INDEX sprinters_jobs_due ON sprinters_jobs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX sprinters_jobs_active_by_labels
    ON sprinters_jobs (label_h, queued_at DESC, id DESC) WHERE active;
"#,
    ),
    (
        4,
        // Bumped whenever a data key is destroyed or rotated: every replica
        // reads it (at most once a second) and drops the keys it cached.
        r#"
ALTER TABLE sprinters_keyring ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
"#,
    ),
    (
        5,
        // Launch slots, counted by a claim within caps: until when a job
        // holds one (its claim's expiry, or for ever while it has a live
        // launch), and its repository. A row written before this
        // migration is taken to hold a slot if it is active past queued
        // (counts skip inactive rows: a replica of an older build finishing
        // it leaves the column behind) and counts per account and owner,
        // not per repository, until its next write.
        r#"
ALTER TABLE sprinters_jobs ADD COLUMN repo_h bytea, ADD COLUMN slot_until bigint;
UPDATE sprinters_jobs SET slot_until =
    CASE WHEN state = 'queued' THEN lease_expires ELSE 9223372036854775807 END
    WHERE active;
CREATE INDEX sprinters_jobs_slots_by_account
    ON sprinters_jobs (account_h, slot_until) WHERE slot_until IS NOT NULL;
CREATE INDEX sprinters_jobs_slots_by_owner
    ON sprinters_jobs (owner_h, slot_until) WHERE slot_until IS NOT NULL;

-- A claim within caps, in one statement: lock the job's account and
-- owner (transaction-scoped advisory locks, taken in one order), count
-- the other jobs holding a slot there, and claim unless a cap is reached.
-- In READ COMMITTED each query of a volatile function takes a new
-- snapshot: the counts see every claim committed before the locks were
-- granted. Answers one row: its outcome ('granted', 'absent', 'taken',
-- 'locked' by a write in flight, or 'full' with the cap and its count)
-- and, when granted, the claimed record's columns.
CREATE FUNCTION sprinters_claim_within(
    p_id bytea, p_holder text, p_now bigint, p_until bigint,
    p_per_account bigint, p_per_repository bigint, p_per_owner bigint)
RETURNS TABLE (version bigint, sealed_version bigint, key_id integer, body bytea,
    lease_owner text, lease_expires bigint, outcome text, cap text, held bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    j record;
    k_owner bigint;
    k_account bigint;
    n_account bigint;
    n_repository bigint;
    n_owner bigint;
BEGIN
    -- Under a stronger isolation the snapshot would predate the locks.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'sprinters_claim_within needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    SELECT s.owner_h, s.account_h, s.repo_h, s.slot_until, s.lease_owner AS holder,
        s.lease_expires AS expires
        INTO j FROM sprinters_jobs s WHERE s.id = p_id;
    IF NOT FOUND THEN
        outcome := 'absent';
        RETURN NEXT;
        RETURN;
    END IF;
    IF j.holder IS NOT NULL AND j.holder <> p_holder AND j.expires > p_now THEN
        outcome := 'taken';
        RETURN NEXT;
        RETURN;
    END IF;
    -- A job that holds a slot already is not counted again.
    IF j.slot_until IS NULL OR j.slot_until <= p_now THEN
        k_owner := ('x' || encode(substring(j.owner_h from 1 for 8), 'hex'))::bit(64)::bigint;
        IF j.account_h IS NULL THEN
            PERFORM pg_advisory_xact_lock(k_owner);
        ELSE
            k_account := ('x' || encode(substring(j.account_h from 1 for 8), 'hex'))::bit(64)::bigint;
            PERFORM pg_advisory_xact_lock(least(k_owner, k_account));
            PERFORM pg_advisory_xact_lock(greatest(k_owner, k_account));
        END IF;
        SELECT count(*) FILTER (WHERE s.account_h = j.account_h),
            count(*) FILTER (WHERE s.owner_h = j.owner_h AND s.repo_h = j.repo_h),
            count(*) FILTER (WHERE s.owner_h = j.owner_h)
            INTO n_account, n_repository, n_owner
            FROM sprinters_jobs s
            WHERE (s.account_h = j.account_h OR s.owner_h = j.owner_h)
                AND s.slot_until IS NOT NULL AND s.slot_until > p_now AND s.active
                AND s.id <> p_id;
        IF n_account >= p_per_account THEN
            cap := 'account';
            held := n_account;
        ELSIF n_repository >= p_per_repository THEN
            cap := 'repository';
            held := n_repository;
        ELSIF n_owner >= p_per_owner THEN
            cap := 'owner';
            held := n_owner;
        END IF;
        -- A cap left out (NULL) compares as NULL: never reached.
        IF cap IS NOT NULL THEN
            outcome := 'full';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        -- Unchanged since read: a slot ended meanwhile would make this
        -- claim a new, uncounted one ('locked': asked again).
        WITH free AS (SELECT s.id FROM sprinters_jobs s WHERE s.id = p_id
            AND (s.lease_owner IS NULL OR s.lease_owner = p_holder OR s.lease_expires <= p_now)
            AND s.slot_until IS NOT DISTINCT FROM j.slot_until
            FOR UPDATE SKIP LOCKED)
        UPDATE sprinters_jobs s SET lease_owner = p_holder, lease_expires = p_until,
            due_at = GREATEST(s.due_at, p_until),
            slot_until = GREATEST(COALESCE(s.slot_until, 0), p_until),
            version = s.version + 1
        FROM free WHERE s.id = free.id
        RETURNING s.version, s.sealed_version, s.key_id, s.body, s.lease_owner,
            s.lease_expires, 'granted'::text, NULL::text, NULL::bigint;
    IF NOT FOUND THEN
        outcome := 'locked';
        RETURN NEXT;
    END IF;
END
$$;
"#,
    ),
    (
        6,
        // Slots are counted per launch, not per job: the live launches a
        // job holds beyond the slot of its next one (a runner another job
        // took, and the job launched again), summed with the slots of
        // next launches by the claim function, which the job's own extras
        // count against too. A row written before this migration holds one
        // slot as before, until its next write.
        concat!(
            r#"
ALTER TABLE sprinters_jobs ADD COLUMN extra_slots integer NOT NULL DEFAULT 0;
CREATE INDEX sprinters_jobs_extra_slots_by_account
    ON sprinters_jobs (account_h) WHERE extra_slots > 0;
CREATE INDEX sprinters_jobs_extra_slots_by_owner
    ON sprinters_jobs (owner_h) WHERE extra_slots > 0;

CREATE OR REPLACE FUNCTION sprinters_claim_within(
    p_id bytea, p_holder text, p_now bigint, p_until bigint,
    p_per_account bigint, p_per_repository bigint, p_per_owner bigint)
RETURNS TABLE (version bigint, sealed_version bigint, key_id integer, body bytea,
    lease_owner text, lease_expires bigint, outcome text, cap text, held bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    j record;
    k_owner bigint;
    k_account bigint;
    n_account bigint;
    n_repository bigint;
    n_owner bigint;
BEGIN
    -- Under a stronger isolation the snapshot would predate the locks.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'sprinters_claim_within needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    SELECT s.owner_h, s.account_h, s.repo_h, s.slot_until, s.extra_slots, s.lease_owner AS holder,
        s.lease_expires AS expires
        INTO j FROM sprinters_jobs s WHERE s.id = p_id;
    IF NOT FOUND THEN
        outcome := 'absent';
        RETURN NEXT;
        RETURN;
    END IF;
    IF j.holder IS NOT NULL AND j.holder <> p_holder AND j.expires > p_now THEN
        outcome := 'taken';
        RETURN NEXT;
        RETURN;
    END IF;
    -- A job whose next launch holds its slot already is not counted again.
    IF j.slot_until IS NULL OR j.slot_until <= p_now THEN
        k_owner := ('x' || encode(substring(j.owner_h from 1 for 8), 'hex'))::bit(64)::bigint;
        IF j.account_h IS NULL THEN
            PERFORM pg_advisory_xact_lock(k_owner);
        ELSE
            k_account := ('x' || encode(substring(j.account_h from 1 for 8), 'hex'))::bit(64)::bigint;
            PERFORM pg_advisory_xact_lock(least(k_owner, k_account));
            PERFORM pg_advisory_xact_lock(greatest(k_owner, k_account));
        END IF;
        -- Every row's live launches beyond its next (the job's own too),
        -- and the slot of its next launch while held.
        SELECT coalesce(sum(w.n) FILTER (WHERE w.account_h = j.account_h), 0),
            coalesce(sum(w.n) FILTER (WHERE w.owner_h = j.owner_h AND w.repo_h = j.repo_h), 0),
            coalesce(sum(w.n) FILTER (WHERE w.owner_h = j.owner_h), 0)
            INTO n_account, n_repository, n_owner
            FROM (SELECT s.account_h, s.owner_h, s.repo_h,
                    s.extra_slots + (s.slot_until IS NOT NULL AND s.slot_until > p_now)::int AS n
                FROM sprinters_jobs s
                -- Each arm repeats a partial index's condition, so that the
                -- rows are found through the four indexes, never the history.
                WHERE "#,
            slot_holders!(),
            r#") w;
        IF n_account >= p_per_account THEN
            cap := 'account';
            held := n_account;
        ELSIF n_repository >= p_per_repository THEN
            cap := 'repository';
            held := n_repository;
        ELSIF n_owner >= p_per_owner THEN
            cap := 'owner';
            held := n_owner;
        END IF;
        -- A cap left out (NULL) compares as NULL: never reached.
        IF cap IS NOT NULL THEN
            outcome := 'full';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        -- Unchanged since read: a slot ended meanwhile would make this
        -- claim a new, uncounted one ('locked': asked again).
        WITH free AS (SELECT s.id FROM sprinters_jobs s WHERE s.id = p_id
            AND (s.lease_owner IS NULL OR s.lease_owner = p_holder OR s.lease_expires <= p_now)
            AND s.slot_until IS NOT DISTINCT FROM j.slot_until
            AND s.extra_slots = j.extra_slots
            FOR UPDATE SKIP LOCKED)
        UPDATE sprinters_jobs s SET lease_owner = p_holder, lease_expires = p_until,
            due_at = GREATEST(s.due_at, p_until),
            slot_until = GREATEST(COALESCE(s.slot_until, 0), p_until),
            version = s.version + 1
        FROM free WHERE s.id = free.id
        RETURNING s.version, s.sealed_version, s.key_id, s.body, s.lease_owner,
            s.lease_expires, 'granted'::text, NULL::text, NULL::bigint;
    IF NOT FOUND THEN
        outcome := 'locked';
        RETURN NEXT;
    END IF;
END
$$;
"#
        ),
    ),
    (
        7,
        // Spare runners per label set: a new job's look for one reads the
        // jobs that have any, never the label set's running jobs. A row
        // written before this migration shows none until its next write
        // (a spare missed costs a launch; the reconciler ends the spare).
        r#"
ALTER TABLE sprinters_jobs ADD COLUMN spares integer NOT NULL DEFAULT 0;
CREATE INDEX sprinters_jobs_spares_by_labels
    ON sprinters_jobs (label_h, queued_at DESC, id DESC) WHERE spares > 0 AND active;
"#,
    ),
    (
        8,
        // An owner's queued jobs, counted for `max_queued` up to the limit
        // by every replica: never its finished history, never its running
        // jobs.
        r#"
CREATE INDEX sprinters_jobs_queued_by_owner
    ON sprinters_jobs (owner_h) WHERE state = 'queued' AND active;
"#,
    ),
];

/// The schema version this build expects.
pub(crate) const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies what is missing; returns the migrations applied now. A database
/// newer than this build is refused rather than written to.
pub(crate) async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_error("taking the migration lock", e))?;
    let applied = apply(client).await;
    // Released even when a migration failed; a lost connection releases it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| pg_error("releasing the migration lock", e));
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

async fn apply(client: &mut Client) -> Result<Vec<i32>> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS sprinters_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(|e| pg_error("creating the migrations table", e))?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM sprinters_migrations",
            &[],
        )
        .await
        .map_err(|e| pg_error("reading the schema version", e))?
        .get(0);
    if current > LATEST {
        return Err(sprinters_core::Error::config(format!(
            "the database's schema is at version {current}, newer than this build's {LATEST}: upgrade Sprinters before pointing it at this database"
        )));
    }
    let mut done = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error("starting a migration", e))?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| pg_error(&format!("applying migration {version}"), e))?;
        tx.execute(
            "INSERT INTO sprinters_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(|e| pg_error(&format!("recording migration {version}"), e))?;
        tx.commit()
            .await
            .map_err(|e| pg_error(&format!("committing migration {version}"), e))?;
        tracing::info!(version, "schema migration applied");
        done.push(*version);
    }
    Ok(done)
}
