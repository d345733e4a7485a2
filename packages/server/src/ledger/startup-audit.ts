import type { Knex } from 'knex';
import { Config } from '../config/config';
import { serverFacts } from '../db/pg-tools';
import { AuditEvent, AuditRecord } from '../module/audit';
import { lastChainedAuditRecord } from '../db/repositories/audit-log';

/**
 * The `service-started` audit record each module's chain gets at every start: the configuration
 * that decides how money is protected (tokens, suite, ring size, token profile, mechanisms,
 * spoilage limit) and the database the service found (its system identifier and timeline, which
 * change when the database is re-created or restored: docs/operations.md). `changed` lists what
 * differs from the previous start recorded in that chain, so configuration changes and restores
 * are on the signed record.
 */
export async function startupEvent(db: Knex, url: string, config: Config, moduleSerial: string, now: Date): Promise<AuditEvent> {
  const facts = await serverFacts(url);
  const settings: Record<string, unknown> = {
    tokenLabels: config.hsm.modules.map((m) => m.tokenLabel),
    suite: config.hsm.suite,
    ringSize: config.hsm.ringSize,
    tokenProfile: config.hsm.profile.name,
    wrapMechanism: config.hsm.wrapMechanism,
    oaepHash: config.hsm.oaepHash,
    spoilageLimitBps: config.spoilageLimitBps,
  };
  const database = { systemIdentifier: facts.systemIdentifier, timeline: facts.timeline, version: facts.version };
  const prev = await lastChainedAuditRecord<AuditRecord>(db, moduleSerial, 'service-started');
  const changed: string[] = [];
  if (prev) {
    const p = prev.details as { settings?: Record<string, unknown>; database?: Record<string, unknown> };
    for (const [k, v] of Object.entries(settings)) if (JSON.stringify(p.settings?.[k]) !== JSON.stringify(v)) changed.push(`settings.${k}`);
    for (const [k, v] of Object.entries(database)) if (JSON.stringify(p.database?.[k]) !== JSON.stringify(v)) changed.push(`database.${k}`);
  }
  return {
    kind: 'service-started', at: now.toISOString(),
    reason: !prev ? 'first start recorded in this chain' : changed.length ? `changed since the previous start: ${changed.join(', ')}` : 'same configuration and database as the previous start',
    details: { settings, database, changed },
  };
}
