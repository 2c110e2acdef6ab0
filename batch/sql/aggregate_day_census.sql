-- A census of the raw events per day (in the pipeline's timezone): row count and a checksum of the timestamps.
-- Only the ts column is read (in BigQuery the cheapest look at every day of the window): a day whose census
-- differs from the one recorded with its daily partial was restated (late or replayed events) and is recomputed.
-- Parameters: @window_start, @window_end (TIMESTAMP, end exclusive), @timezone (STRING).
SELECT
  DATE(ts, @timezone) AS day,
  COUNT(*) AS n_rows,
  SUM(MOD(UNIX_MICROS(ts), 1000003)) AS ts_checksum
FROM {events_table}
WHERE ts >= @window_start AND ts < @window_end
GROUP BY day
