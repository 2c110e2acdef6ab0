-- Daily partial aggregates and the data stats of the days [@window_start, @window_end) being (re)computed, in
-- one scan: one row per (status, event day in the pipeline's timezone), and for valid rows one per (day, user,
-- item). Python splits it: the valid rows are the day's partial (weight = SUM(weight), n_events = n_rows), and
-- summed per (status, day) they are the stats aggregate_stats.sql gives a full scan (n_rows, max_ts).
-- The window's interactions are the sums of the partials over its days: weight = SUM(weight), weight_train =
-- SUM(weight) of the days before the holdout, holdout_events = SUM(n_events) of the holdout days (holdout
-- boundaries are day boundaries), the figures aggregate_interactions.sql gives in one scan. The same
-- clean_events fragment classifies the rows, so the same rows are dropped for the same reasons (a duplicate
-- shares its timestamp, hence its day). Rows whose timestamp is null or before 1970 (no day in the range) come
-- back as their own (status, day) rows, as in aggregate_stats.sql.
-- Parameters: those of clean_events, plus @timezone (STRING).
--@include clean_events
SELECT
  status,
  DATE(ts, @timezone) AS day,
  IF(status = 'valid', user_id, NULL) AS user_id,
  IF(status = 'valid', item_id, NULL) AS item_id,
  SUM(weight) AS weight,
  COUNT(*) AS n_rows,
  MAX(ts) AS max_ts
FROM classified
GROUP BY 1, 2, 3, 4
