-- Items on sale at the end of the session date. An item that left sale later is still available for an old
-- session date, so backfills see the catalogue as it was.
-- Parameters: @window_end (TIMESTAMP).
SELECT
  item_id,
  (available_from IS NULL OR available_from < @window_end)
    AND (available_until IS NULL OR available_until >= @window_end) AS available
FROM {items_table}
WHERE item_id IS NOT NULL
