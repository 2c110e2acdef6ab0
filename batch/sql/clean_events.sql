-- Shared fragment: the events a pipeline may use, each row classified once so that every query drops the same
-- rows for the same reasons. Only rows up to the end of the session date are scanned (plus rows whose timestamp
-- is itself invalid, so they can be counted): a backfill of an old date never sees its future.
-- Parameters: @window_start, @window_end (TIMESTAMP, end exclusive), @now (TIMESTAMP),
--             @event_weights (ARRAY<STRUCT<event_type STRING, weight FLOAT64>>)
WITH
weights AS (
  SELECT w.event_type, w.weight FROM UNNEST(@event_weights) AS w
),
scanned AS (
  SELECT user_id, item_id, event_type, ts
  FROM {events_table}
  WHERE ts IS NULL
     OR ts < TIMESTAMP '1970-01-01 00:00:00+00'
     OR (ts >= @window_start AND ts < @window_end)
),
classified AS (
  SELECT
    s.user_id, s.item_id, s.event_type, s.ts, w.weight,
    CASE
      WHEN s.user_id IS NULL OR s.item_id IS NULL OR s.user_id = '' OR s.item_id = '' THEN 'null_id'
      WHEN s.ts IS NULL OR s.ts < TIMESTAMP '1970-01-01 00:00:00+00' OR s.ts > @now THEN 'bad_timestamp'
      WHEN w.weight IS NULL THEN 'unknown_event_type'
      WHEN ROW_NUMBER() OVER (PARTITION BY s.user_id, s.item_id, s.event_type, s.ts ORDER BY s.ts) > 1 THEN 'duplicate'
      ELSE 'valid'
    END AS status
  FROM scanned AS s
  LEFT JOIN weights AS w ON s.event_type = w.event_type
)
