-- The licensing authority's own revocations (docs/licensing.md, "The authority's revocations"):
-- how far its event feed was read, per authority, and the revocations of licence numbers this
-- service does not know (kept for the operator; nothing is revoked for them).
CREATE TABLE licence_event_cursors (
  authority   text PRIMARY KEY,
  cursor      text NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE licence_events_unmatched (
  authority   text NOT NULL,
  licence_id  text NOT NULL,
  reason      text NOT NULL,
  revoked_at  timestamptz NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (authority, licence_id)
);
CREATE INDEX license_requests_licence_id ON license_requests (licence_id);
