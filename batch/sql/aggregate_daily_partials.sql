-- Daily partial aggregates: one row per event day (in the pipeline's timezone), user and item, over the days
-- [@window_start, @window_end) being (re)computed. The window's interactions are the sums of these rows over its
-- days: weight = SUM(weight), weight_train = SUM(weight) of the days before the holdout, holdout_events =
-- SUM(n_events) of the holdout days (holdout boundaries are day boundaries), the same figures
-- aggregate_interactions.sql gives in one scan. The same clean_events fragment classifies the rows, so the same
-- rows are dropped for the same reasons (a duplicate shares its timestamp, hence its day).
-- Parameters: those of clean_events, plus @timezone (STRING).
--@include clean_events
SELECT
  DATE(ts, @timezone) AS day,
  user_id,
  item_id,
  SUM(weight) AS weight,
  COUNT(*) AS n_events
FROM classified
WHERE status = 'valid'
GROUP BY day, user_id, item_id
