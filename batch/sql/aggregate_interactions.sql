-- Weighted user-item interactions over the lookback window ending with the session date.
-- weight_train leaves out the holdout days (offline evaluation trains on it); holdout_events counts the
-- interactions inside the holdout days.
-- Parameters: those of clean_events, plus @holdout_start (TIMESTAMP).
--@include clean_events
SELECT
  user_id,
  item_id,
  SUM(weight) AS weight,
  SUM(IF(ts < @holdout_start, weight, 0.0)) AS weight_train,
  COUNTIF(ts >= @holdout_start) AS holdout_events,
  COUNT(*) AS n_events,
  MAX(ts) AS last_ts
FROM classified
WHERE status = 'valid'
GROUP BY user_id, item_id
