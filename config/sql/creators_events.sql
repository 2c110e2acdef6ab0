-- creators to follow: the events relation of config/pipelines/creators.yaml (source.events_sql).
-- Each event on an item becomes the same event on the item's creator, so the aggregate step weighs user-creator
-- pairs exactly as it weighs user-item pairs for the demo. An event whose item has no creator in the catalogue
-- keeps a NULL id: the aggregate drops and counts it (null_id) rather than losing it silently.
-- Yields: user_id, item_id (= creator_id), event_type, ts.  Tables: {events_table}, {items_table}.
SELECT
  e.user_id,
  c.creator_id AS item_id,
  e.event_type,
  e.ts
FROM {events_table} AS e
LEFT JOIN (
  SELECT DISTINCT item_id, creator_id
  FROM {items_table}
  WHERE item_id IS NOT NULL AND creator_id IS NOT NULL
) AS c
  ON e.item_id = c.item_id
