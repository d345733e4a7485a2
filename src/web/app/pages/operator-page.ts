import { field, h, onSubmit, outcome, table } from '../dom';
import { api, operatorGet } from '../service-api';

interface HealthModule { serial?: string; label?: string; state?: string; inRotation?: boolean; probe?: { profile?: string; ok?: boolean; failed?: string[] }; [k: string]: unknown }

/** The operator's page: module states and self-test/probe results (/v1/health), fraud cases. */
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
    const health = await api.get<{ modules: HealthModule[]; database: string }>('/v1/health').catch((e: unknown) => {
      const d = (e as { details?: unknown }).details;
      throw Object.assign(new Error(`health: ${(e as Error).message}`), { code: (e as { code?: string }).code, details: d });
    });
    const cases = await operatorGet<{ cases: Array<{ caseId: number; kind: string; meterId: string; digest: string | null; reportedAt: string }> }>(
      `/v1/operator/fraud-cases?meterId=${encodeURIComponent(meterId.value.trim())}`, bearer.value.trim());
    result.replaceChildren(
      h('p', {}, `Database: ${health.database}`),
      table('Modules', ['Module', 'State', 'In rotation', 'Token profile', 'Probe'],
        health.modules.map((m) => [String(m.serial ?? m.label ?? '?'), String(m.state ?? '?'), m.inRotation ? 'yes' : 'no', m.probe?.profile ?? '—',
          m.probe ? (m.probe.ok ? 'passed' : `failed: ${(m.probe.failed ?? []).join(', ')}`) : '—'])),
      table(`Fraud cases of meter ${meterId.value.trim()} (newest first)`, ['Case', 'Kind', 'Meter', 'Indicium digest', 'Reported'],
        cases.cases.map((c) => [c.caseId, c.kind, c.meterId, c.digest ?? '—', c.reportedAt])));
  });
  view.append(form, out.el, result, h('p', { class: 'note' }, 'Not on this page yet: the checkpoint ring, key rotation, the postage pool and the audit records (use npm run ceremony -- status, npm run audit -- list, npm run verify-journal).'));
}
