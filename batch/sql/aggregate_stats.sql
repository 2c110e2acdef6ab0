-- Row counts per classification and per day (in the pipeline's timezone): what was used, what was dropped and why.
-- Parameters: those of clean_events, plus @timezone (STRING).
--@include clean_events
SELECT
  status,
  DATE(ts, @timezone) AS day,
  COUNT(*) AS n_rows,
  MAX(ts) AS max_ts
FROM classified
GROUP BY status, day
