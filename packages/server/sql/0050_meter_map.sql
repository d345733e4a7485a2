-- The meter map (docs/checkpoint.md): a sparse Merkle tree over meter slots whose root is in every
-- checkpoint record and so in the modules' token rings. Every command proves the meter's package
-- against that root with the sibling nodes stored here.
-- Runs inside a transaction opened by packages/server/src/db/migrations.ts; no BEGIN/COMMIT here.

-- One row per map shard (one shard today): the map's state as the database presents it. The row
-- lock is the serialisation point of all package-changing commands of the shard.
CREATE TABLE meter_map (
  shard       smallint PRIMARY KEY CHECK (shard = 0),
  epoch       bigint NOT NULL CHECK (epoch >= 0),
  root        bytea NOT NULL CHECK (octet_length(root) = 32),
  next_slot   bigint NOT NULL CHECK (next_slot >= 0),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- epoch 0 is the empty map: SHA-256 node hashes over all-zero leaves, depth 24
-- (packages/server/src/module/meter-map.ts); the service checks this value against its own at start.
INSERT INTO meter_map (shard, epoch, root, next_slot)
  VALUES (0, 0, decode('fd153e6be1763177c1d43f43661a359214d26256cf62b811d8442382dbca7470', 'hex'), 0);

-- Non-empty nodes only: level 0 = leaves (index = slot), level 24 = root. A missing node is empty.
CREATE TABLE meter_map_nodes (
  shard   smallint NOT NULL DEFAULT 0,
  level   smallint NOT NULL CHECK (level BETWEEN 0 AND 24),
  idx     bigint NOT NULL CHECK (idx >= 0),
  hash    bytea NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (shard, level, idx)
) WITH (fillfactor = 70); -- room for HOT updates: every command rewrites 25 nodes

-- Each meter's slot in the map, given at creation and never reused. Meters created before this
-- migration have none and are refused until an officer rebuilds the map (docs/checkpoint.md).
ALTER TABLE meters ADD COLUMN slot bigint CHECK (slot >= 0);
