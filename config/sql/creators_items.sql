-- creators to follow: the catalogue relation of config/pipelines/creators.yaml (source.items_sql).
-- A creator is on offer while any of its items is: from its earliest item's arrival to its last item's departure.
-- NULL means "always" on both ends (NULL available_until: still on sale), and MIN/MAX skip NULLs, so one item
-- with a NULL bound makes the creator's bound NULL; otherwise a creator whose newest item is still on sale would
-- be taken for gone when an older item left.
-- The span is a hull: a creator with a gap between two items' sale periods counts as on offer inside the gap.
-- Yields: item_id (= creator_id), available_from, available_until.  Tables: {items_table}.
SELECT
  creator_id AS item_id,
  IF(LOGICAL_OR(available_from IS NULL), NULL, MIN(available_from)) AS available_from,
  IF(LOGICAL_OR(available_until IS NULL), NULL, MAX(available_until)) AS available_until
FROM {items_table}
WHERE creator_id IS NOT NULL
GROUP BY creator_id
