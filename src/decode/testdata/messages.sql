-- How v1_messages.jsonl, v1_chunks_messages.jsonl, v1_chunks_pretty_messages.jsonl and
-- v2_messages.jsonl were captured (PostgreSQL 15, wal2json 2.5, one slot per file):
-- the exact bytes as `{"lsn": ..., "hex": encode(data, 'hex')}` per line, because
-- message content may be any bytes (not UTF-8, so not representable as JSON text).
--
--   SELECT json_build_object('lsn', lsn, 'hex', encode(data, 'hex'))
--   FROM pg_logical_slot_peek_binary_changes('<slot>', NULL, NULL,
--        'format-version', '1', 'write-in-chunks', 'false'|'true', ['pretty-print', 'true',]
--        'include-xids', 'true', 'include-timestamp', 'true', 'include-lsn', 'true',
--        'include-pk', 'true');
--
-- What it shows: after a transaction of two or more changes, wal2json 2.5 (format 1)
-- writes a non-transactional message as `{"change":[,{...}]}` (its change counter
-- is reset only at BEGIN), and message content is written byte for byte.
CREATE TABLE t (id int PRIMARY KEY, v text);
BEGIN; INSERT INTO t VALUES (1, 'one'); INSERT INTO t VALUES (2, 'two'); COMMIT;
SELECT pg_logical_emit_message(false, 'pg-cdc-to-kinesis-heartbeat', '2026-11-30T01:50:00Z');
SELECT pg_logical_emit_message(false, 'app-prefix', 'second in a row');
SELECT pg_logical_emit_message(false, 'app-binary', '\xc328ff00'::bytea);
BEGIN; INSERT INTO t VALUES (3, 'three');
  SELECT pg_logical_emit_message(true, 'app-binary-txn', '\xfffe41'::bytea);
  INSERT INTO t VALUES (4, 'four'); COMMIT;
INSERT INTO t VALUES (5, 'five');
SELECT pg_logical_emit_message(false, 'pg-cdc-to-kinesis-heartbeat', '2026-11-30T01:51:00Z');
-- (one more commit so the last message is flushed and peekable)
CREATE TABLE flush_marker(); DROP TABLE flush_marker;
