import type { AuditRecordView, PoolView } from '../../../api/operator-views';
import { formatMills } from '@vbi/client/client/money';
import type { ModuleHealth } from '../../../service';
import { field, h, onSubmit, outcome, table } from '../dom';
import { operatorGet } from '../service-api';

/** A module as GET /v1/health reports it (the probe in summary). */
type HealthModule = Omit<ModuleHealth, 'probe'> & { probe: { profile: string; ok: boolean; failed: string[] } | null };

/**
 * The operator's page: module states, rotation, self-tests, rings and probes (GET /v1/health),
 * the postage pool, the newest audit records and one meter's fraud cases (operator credential).
 */
export function operatorPage(view: HTMLElement): void {
  const out = outcome();
  const bearer = h('input', { type: 'password', name: 'bearer', required: true, autocomplete: 'off' });
  const meterId = h('input', { name: 'meterId', required: true, maxlength: 64 });
  const result = h('section', { id: 'operator-result' });
  const form = h('form', { id: 'operator-form' },
    field('Operator credential', bearer, 'from npm run credentials -- add operator'),
    field('Meter ID', meterId, 'the service lists fraud cases one meter at a time'),
    h('button', { type: 'submit' }, 'Show'));
  onSubmit(form, out, async () => {
    // /v1/health answers 503 with the same body when no module serves: show it then too
    const health = await fetch('/v1/health', { headers: { accept: 'application/json' } }).then((r) => r.json() as Promise<{ modules: HealthModule[]; database: string }>);
    const cases = await operatorGet<{ cases: Array<{ caseId: number; kind: string; meterId: string; digest: string | null; reportedAt: string }> }>(
      `/v1/operator/fraud-cases?meterId=${encodeURIComponent(meterId.value.trim())}`, bearer.value.trim());
    const pool = await operatorGet<PoolView>('/v1/operator/pool', bearer.value.trim());
    const audit = await operatorGet<{ records: AuditRecordView[] }>('/v1/operator/audit-records?limit=20', bearer.value.trim());
    result.replaceChildren(
      h('p', {}, `Database: ${health.database}`),
      table('Modules', ['Module', 'State', 'Since', 'Rotation', 'Suite', 'Self-test', 'Ring (entries / size, newest)', 'Inhibited', 'Token profile and probe'],
        health.modules.map((m) => [
          m.serial, m.reason ? `${m.state}: ${m.reason}` : m.state, m.since, m.inRotation ? 'in rotation' : `out: ${m.outOfRotation ?? ''}`, String(m.suite),
          m.selfTest ? `${m.selfTest.ok ? 'passed' : 'FAILED'} (${m.selfTest.results.length} tests, ${m.selfTest.ms} ms${m.selfTest.disabled.length ? `, disabled: ${m.selfTest.disabled.join(', ')}` : ''})` : '—',
          `${m.ring.entries} / ${m.ring.size}, #${m.ring.newestSeq ?? '—'}`, m.inhibited ? `${m.inhibited.reason} (${m.inhibited.at})` : 'no',
          m.probe ? `${m.probe.profile}: ${m.probe.ok ? 'passed' : `failed ${m.probe.failed.join(', ')}`}` : m.profile,
        ])),
      h('h3', {}, 'Postage pool'),
      h('dl', { class: 'fields', id: 'pool' },
        h('dt', {}, 'Bought from the post'), h('dd', { 'data-field': 'purchased' }, formatMills(pool.pool.purchased)),
        h('dt', {}, 'Available to sell to meters'), h('dd', { 'data-field': 'available' }, formatMills(pool.pool.available)),
        h('dt', {}, 'Refunds paid'), h('dd', { 'data-field': 'refundsPaid' }, formatMills(pool.pool.refundsPaid)),
        h('dt', {}, 'Meters with an indicium key'), h('dd', { 'data-field': 'keyMeters' }, pool.indiciumKeys.meters),
        h('dt', {}, 'First indicium key expiry (renewed ahead by the service)'), h('dd', { 'data-field': 'soonestExpiry' }, pool.indiciumKeys.soonestExpiry ?? '—')),
      table('Newest audit records (signed by each module\'s identity key)', ['Time', 'Module', 'Chain position', 'Kind'],
        audit.records.map((r) => [r.at, r.moduleSerial, r.seq ?? '—', r.kind])),
      cases.cases.length === 0 ? h('p', { id: 'no-cases' }, `No fraud cases for meter ${meterId.value.trim()}.`)
        : table(`Fraud cases of meter ${meterId.value.trim()} (newest first)`, ['Case', 'Kind', 'Meter', 'Indicium digest', 'Reported'],
          cases.cases.map((c) => [c.caseId, c.kind, c.meterId, c.digest ?? '—', c.reportedAt])));
  });
  view.append(form, out.el, result, h('p', { class: 'note' }, 'Not on this page: key ceremonies and rotation of module keys (npm run ceremony -- status), verifying the audit chains (npm run audit -- verify) and the journal (npm run verify-journal).'));
}
