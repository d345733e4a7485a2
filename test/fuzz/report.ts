/**
 * What a fuzz run found, and its totals. Findings are deduplicated by route and kind (the kind
 * names the specific problem, e.g. "5xx 500 INTERNAL" or "state changed: meters.package"), with
 * a count and the first example kept.
 */
export interface Finding {
  /** 'POST /v1/purchases' (the route as the OpenAPI document names it), or '-' for run-wide checks. */
  route: string;
  kind: string;
  /** What was wrong, in words. */
  detail: string;
  status?: number;
  code?: string;
  /** The mutation that produced the example request. */
  mutation?: string;
  /** The example request, abbreviated. */
  request?: string;
  /** The answer's body, abbreviated. */
  answer?: string;
  count: number;
}

export interface FuzzReport {
  seed: number;
  /** Requests asked for, and sent in the fuzzing phase (fewer when the time ran out). */
  requested: number;
  sent: number;
  elapsedMs: number;
  /** Fuzzing-phase requests per route ('METHOD /path' of the OpenAPI document). */
  byRoute: Record<string, number>;
  /** Fuzzing-phase answers per HTTP status ('0' = no answer). */
  byStatus: Record<string, number>;
  /** Fuzzing-phase requests per mutation family. */
  byFamily: Record<string, number>;
  /** Routes of the OpenAPI document that got no request (should be none). */
  uncovered: string[];
  findings: Finding[];
}

/** Collects findings, merging repeats of the same route and kind. */
export class FindingLog {
  private readonly byKey = new Map<string, Finding>();

  add(f: Omit<Finding, 'count'>): void {
    const key = `${f.route}\u0000${f.kind}`;
    const seen = this.byKey.get(key);
    if (seen) seen.count++;
    else this.byKey.set(key, { ...f, count: 1 });
  }

  list(): Finding[] {
    return [...this.byKey.values()];
  }

  get size(): number {
    return this.byKey.size;
  }
}

/** Abbreviates text for a report line; control characters are shown escaped. */
export function abbreviate(text: string, max = 240): string {
  const shown = JSON.stringify(text).slice(1, -1);
  return shown.length > max ? `${shown.slice(0, max)}… (${text.length} chars)` : shown;
}

function table(counts: Record<string, number>): string {
  return Object.entries(counts).sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([k, n]) => `  ${String(n).padStart(5)}  ${k}`).join('\n');
}

/** The report as text: totals, then every finding with its example. */
export function formatReport(r: FuzzReport): string {
  const lines = [
    `fuzz seed ${r.seed}: ${r.sent}/${r.requested} requests in ${(r.elapsedMs / 1000).toFixed(1)} s, ${r.findings.length} finding(s)`,
    'requests by route:', table(r.byRoute),
    'answers by status:', table(r.byStatus),
    'requests by mutation family:', table(r.byFamily),
  ];
  if (r.uncovered.length) lines.push(`routes never fuzzed: ${r.uncovered.join(', ')}`);
  if (r.findings.length) lines.push('findings:');
  r.findings.forEach((f, i) => {
    lines.push(`${i + 1}. [${f.route}] ${f.kind} (x${f.count})${f.status !== undefined ? ` status ${f.status}` : ''}${f.code ? ` ${f.code}` : ''}`);
    lines.push(`   ${f.detail}`);
    if (f.mutation) lines.push(`   mutation: ${f.mutation}`);
    if (f.request) lines.push(`   request:  ${f.request}`);
    if (f.answer) lines.push(`   answer:   ${f.answer}`);
  });
  return lines.join('\n');
}
