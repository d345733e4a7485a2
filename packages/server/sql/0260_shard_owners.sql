-- Which process serves each shard now (packages/server/src/config/shard.ts, docs/operations.md "Several
-- processes, several tokens"): the URL a request for a meter of another shard is redirected to.
-- Written by the process holding the shard's lease once it listens. In the public schema, which
-- every shard's schema shares; each shard's migrations run this file, so only the first creates it.
CREATE TABLE IF NOT EXISTS public.shard_owners (
  shard        int PRIMARY KEY CHECK (shard BETWEEN 0 AND 999),
  url          text NOT NULL CHECK (url ~ '^https?://'),
  instance_id  text NOT NULL,
  since        timestamptz NOT NULL DEFAULT now()
);
