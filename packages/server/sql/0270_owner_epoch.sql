-- The shard's ownership epoch (docs/operations.md, "Several processes, several tokens"): the
-- process that takes the shard's lease raises it, and every command's write of the map row
-- requires the value its process raised it to, so a process the shard was taken from can never
-- commit again.
ALTER TABLE meter_map ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0 CHECK (owner_epoch >= 0);
