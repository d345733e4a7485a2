import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { KeyReport } from '../hsm/key-ceremony';

/**
 * The JSON transcript of one ceremony step: who, when, which token, which keys with their
 * check values. Never a key value or a PIN (test/hsm/ceremony.test.ts scans for the PINs).
 */
export interface Transcript {
  ceremony: string;
  officer: string;
  at: string;
  host: string;
  osUser: string;
  library: string;
  tokens: Array<{ label: string; serial: string }>;
  suite?: string;
  keys?: Array<Pick<KeyReport, 'role' | 'label' | 'class' | 'keyType' | 'kcv' | 'spkiSha256'> & { token: string }>;
  result: Record<string, unknown>;
}

export function keyLines(token: string, keys: KeyReport[]): NonNullable<Transcript['keys']> {
  return keys.map((k) => ({ token, role: k.role, label: k.label, class: k.class, keyType: k.keyType, kcv: k.kcv, spkiSha256: k.spkiSha256 }));
}

export function writeTranscript(dir: string, t: Omit<Transcript, 'at' | 'host' | 'osUser'>): { path: string; transcript: Transcript } {
  const at = new Date().toISOString();
  const transcript: Transcript = { ...t, at, host: hostname(), osUser: userInfo().username };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const serial = t.tokens[0]?.serial ?? 'none';
  const path = join(dir, `${at.replace(/[:.]/g, '-')}-${t.ceremony}-${serial}.json`);
  writeFileSync(path, JSON.stringify(transcript, null, 2) + '\n', { mode: 0o600 });
  return { path, transcript };
}
