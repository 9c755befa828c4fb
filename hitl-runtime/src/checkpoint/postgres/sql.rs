//! The Postgres saver's SQL: versioned migrations and statements, with the schema
//! filled in.

/// Versioned migrations; `{s}` is the schema. The index + 1 is the version.
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE {s}.hitl_checkpoints (
         thread TEXT NOT NULL, ns TEXT NOT NULL, id TEXT NOT NULL, parent TEXT,
         record TEXT NOT NULL,
         PRIMARY KEY (thread, ns, id));
     CREATE TABLE {s}.hitl_blobs (
         thread TEXT NOT NULL, ns TEXT NOT NULL, channel TEXT NOT NULL, version TEXT NOT NULL,
         kind TEXT NOT NULL, base TEXT, data TEXT NOT NULL,
         PRIMARY KEY (thread, ns, channel, version));
     CREATE TABLE {s}.hitl_writes (
         thread TEXT NOT NULL, ns TEXT NOT NULL, checkpoint TEXT NOT NULL, task TEXT NOT NULL,
         idx INTEGER NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
         PRIMARY KEY (thread, ns, checkpoint, task, idx));
     CREATE TABLE {s}.hitl_heads (
         thread TEXT NOT NULL, ns TEXT NOT NULL, head TEXT NOT NULL,
         PRIMARY KEY (thread, ns));",
    "CREATE TABLE {s}.hitl_flush (instance TEXT PRIMARY KEY, n BIGINT NOT NULL);",
    // 3: run leases, one runner per thread; expiry in the database's clock.
    "CREATE TABLE {s}.hitl_leases (
         thread TEXT PRIMARY KEY, holder TEXT NOT NULL, expires TIMESTAMPTZ NOT NULL);",
    // 4: a checksum on every record, blob and pending write (filled in for the rows
    // already there by the saver's setup).
    "ALTER TABLE {s}.hitl_checkpoints ADD COLUMN sum BIGINT;
     ALTER TABLE {s}.hitl_blobs ADD COLUMN sum BIGINT;
     ALTER TABLE {s}.hitl_writes ADD COLUMN sum BIGINT;",
    // 5: decision records, append-only and hash-chained per thread.
    "CREATE TABLE {s}.hitl_decisions (
         thread TEXT NOT NULL, seq BIGINT NOT NULL, reviewer TEXT, body TEXT NOT NULL,
         prev_hash TEXT, hash TEXT NOT NULL,
         PRIMARY KEY (thread, seq));
     CREATE INDEX hitl_decisions_reviewer ON {s}.hitl_decisions (reviewer);
     CREATE FUNCTION {s}.hitl_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS
     $$ BEGIN RAISE EXCEPTION 'decision records are append-only'; END $$;
     CREATE TRIGGER hitl_decisions_no_change BEFORE UPDATE OR DELETE ON {s}.hitl_decisions
     FOR EACH ROW EXECUTE FUNCTION {s}.hitl_decisions_append_only();
     CREATE TRIGGER hitl_decisions_no_truncate BEFORE TRUNCATE ON {s}.hitl_decisions
     FOR EACH STATEMENT EXECUTE FUNCTION {s}.hitl_decisions_append_only();",
];

/// The migration that adds checksums (its 1-based version).
pub(super) const CHECKSUMS: usize = 4;

/// The statements, with the schema filled in.
pub(super) struct Sql {
    pub(super) get: String,
    pub(super) head: String,
    pub(super) put: String,
    pub(super) writes: String,
    pub(super) answer: String,
    pub(super) list: String,
    pub(super) delete: String,
    pub(super) inbox: String,
    pub(super) flush: String,
    pub(super) acquire: String,
    pub(super) renew: String,
    pub(super) release: String,
}

impl Sql {
    pub(super) fn new(s: &str) -> Sql {
        let f = |q: &str| q.replace("{s}", s);
        Sql {
            get: f("WITH target AS (
                        SELECT COALESCE($3::text,
                            (SELECT head FROM {s}.hitl_heads WHERE thread = $1 AND ns = $2)) AS id),
                    cp AS (
                        SELECT c.id, c.record, c.sum FROM {s}.hitl_checkpoints c, target t
                        WHERE c.thread = $1 AND c.ns = $2 AND c.id = t.id)
                    SELECT cp.id, cp.record,
                      (SELECT COALESCE(json_agg(json_build_array(b.channel, b.version, b.kind, b.base, b.data, b.sum)), '[]')::text
                         FROM {s}.hitl_blobs b, jsonb_array_elements(cp.record::jsonb->'channels') ch
                         WHERE cp.id IS DISTINCT FROM $4::text
                           AND b.thread = $1 AND b.ns = $2 AND b.channel = ch->>'c'
                           AND b.version BETWEEN COALESCE(ch->'d'->>'s', ch->>'v') AND ch->>'v'),
                      (SELECT COALESCE(json_agg(json_build_array(w.task, w.idx, w.kind, w.value, w.sum) ORDER BY w.task, w.idx), '[]')::text
                         FROM {s}.hitl_writes w
                         WHERE w.thread = $1 AND w.ns = $2 AND w.checkpoint = cp.id),
                      cp.sum, (SELECT id FROM target)
                    FROM (SELECT 1) AS one LEFT JOIN cp ON true"),
            head: f("SELECT head FROM {s}.hitl_heads WHERE thread = $1 AND ns = $2"),
            put: f("WITH upd AS (
                        UPDATE {s}.hitl_heads SET head = $3
                        WHERE thread = $1 AND ns = $2 AND head = $4::text RETURNING 1),
                    ins AS (
                        INSERT INTO {s}.hitl_heads (thread, ns, head)
                        SELECT $1, $2, $3 WHERE $4::text IS NULL
                        ON CONFLICT DO NOTHING RETURNING 1),
                    ok AS (SELECT 1 FROM upd UNION ALL SELECT 1 FROM ins),
                    c AS (
                        INSERT INTO {s}.hitl_checkpoints (thread, ns, id, parent, record, sum)
                        SELECT $1, $2, $3, $5, $6, $17 WHERE EXISTS (SELECT 1 FROM ok)),
                    b AS (
                        INSERT INTO {s}.hitl_blobs (thread, ns, channel, version, kind, base, data, sum)
                        SELECT $1, $2, u.channel, u.version, u.kind, u.base, u.data, u.sum
                        FROM unnest($7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $18::bigint[])
                             AS u(channel, version, kind, base, data, sum)
                        WHERE EXISTS (SELECT 1 FROM ok)
                        ON CONFLICT DO NOTHING),
                    wd AS (
                        SELECT * FROM unnest($12::text[], $13::int[], $14::text[], $15::text[], $16::bool[], $19::bigint[])
                               AS u(task, idx, kind, value, upsert, sum)
                        WHERE EXISTS (SELECT 1 FROM ok)),
                    wi AS (
                        INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                        SELECT $1, $2, $4, task, idx, kind, value, sum FROM wd WHERE NOT upsert
                        ON CONFLICT DO NOTHING),
                    wu AS (
                        INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                        SELECT $1, $2, $4, task, idx, kind, value, sum FROM wd WHERE upsert
                        ON CONFLICT (thread, ns, checkpoint, task, idx)
                        DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, sum = EXCLUDED.sum)
                    SELECT (SELECT count(*) FROM ok),
                           (SELECT head FROM {s}.hitl_heads WHERE thread = $1 AND ns = $2)"),
            writes: f("WITH data AS (
                           SELECT * FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::bool[], $9::bigint[])
                                  AS u(task, idx, kind, value, upsert, sum)),
                       ins AS (
                           INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                           SELECT $1, $2, $3, task, idx, kind, value, sum FROM data WHERE NOT upsert
                           ON CONFLICT DO NOTHING),
                       ups AS (
                           INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                           SELECT $1, $2, $3, task, idx, kind, value, sum FROM data WHERE upsert
                           ON CONFLICT (thread, ns, checkpoint, task, idx)
                           DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, sum = EXCLUDED.sum)
                       SELECT 1"),
            // Answers: only on the head (locked until the statement commits), each slot
            // once. A taken slot fails the whole statement (no ON CONFLICT), so a
            // batch is all or nothing.
            answer: f("WITH h AS (
                           SELECT head FROM {s}.hitl_heads WHERE thread = $1 AND ns = $2 FOR SHARE),
                       data AS (
                           SELECT * FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::text[], $9::bigint[])
                                  AS u(task, idx, kind, value, mode, sum)
                           WHERE EXISTS (SELECT 1 FROM h WHERE head = $3)),
                       ans AS (
                           INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                           SELECT $1, $2, $3, task, idx, kind, value, sum FROM data WHERE mode = 'answer'),
                       ins AS (
                           INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                           SELECT $1, $2, $3, task, idx, kind, value, sum FROM data WHERE mode = 'insert'
                           ON CONFLICT DO NOTHING),
                       ups AS (
                           INSERT INTO {s}.hitl_writes (thread, ns, checkpoint, task, idx, kind, value, sum)
                           SELECT $1, $2, $3, task, idx, kind, value, sum FROM data WHERE mode = 'upsert'
                           ON CONFLICT (thread, ns, checkpoint, task, idx)
                           DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, sum = EXCLUDED.sum)
                       SELECT (SELECT head FROM h)"),
            list: f("SELECT record, sum FROM {s}.hitl_checkpoints
                     WHERE thread = $1 AND ns = $2 AND ($3::text IS NULL OR id < $3)
                       AND ($4::text = '{}' OR COALESCE(record::jsonb->'metadata', '{}') @> $4::text::jsonb)
                     ORDER BY id DESC LIMIT $5"),
            delete: f("WITH a AS (DELETE FROM {s}.hitl_checkpoints WHERE thread = $1),
                            b AS (DELETE FROM {s}.hitl_blobs WHERE thread = $1),
                            c AS (DELETE FROM {s}.hitl_writes WHERE thread = $1),
                            d AS (DELETE FROM {s}.hitl_leases WHERE thread = $1)
                       DELETE FROM {s}.hitl_heads WHERE thread = $1"),
            inbox: f("SELECT h.thread, h.head,
                        (SELECT json_agg(json_build_array(w.task, w.idx, w.kind, w.value, w.sum))::text
                           FROM {s}.hitl_writes w
                           WHERE w.thread = h.thread AND w.ns = '' AND w.checkpoint = h.head)
                      FROM {s}.hitl_heads h
                      WHERE h.ns = '' AND EXISTS (
                          SELECT 1 FROM {s}.hitl_writes w
                          WHERE w.thread = h.thread AND w.ns = '' AND w.checkpoint = h.head
                            AND w.kind = 'interrupt')
                      ORDER BY h.head DESC"),
            flush: f("BEGIN;
                      SET LOCAL synchronous_commit = on;
                      INSERT INTO {s}.hitl_flush (instance, n) VALUES ('{i}', 1)
                      ON CONFLICT (instance) DO UPDATE SET n = {s}.hitl_flush.n + 1;
                      COMMIT;"),
            acquire: f("WITH up AS (
                            INSERT INTO {s}.hitl_leases AS l (thread, holder, expires)
                            VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond')
                            ON CONFLICT (thread) DO UPDATE
                              SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
                              WHERE l.expires <= clock_timestamp() OR l.holder = EXCLUDED.holder
                            RETURNING holder)
                        SELECT (SELECT holder FROM up),
                               (SELECT holder FROM {s}.hitl_leases WHERE thread = $1)"),
            renew: f("UPDATE {s}.hitl_leases
                        SET expires = clock_timestamp() + $3::bigint * interval '1 millisecond'
                      WHERE thread = $1 AND holder = $2"),
            release: f("DELETE FROM {s}.hitl_leases WHERE thread = $1 AND holder = $2"),
        }
    }
}
