import { HttpClient } from '@vbi/client/client/http';
import type { LabelSize } from '@vbi/core/indicium/render/label-request';
import type { VerifyAnswer } from '@vbi/client/client/wire';

/** The service's public routes the pages call directly (labels, verify, rates, operator). */
export const api = new HttpClient({ baseUrl: location.origin });

/** A label drawn by the service's renderer (the CLI's), as bytes. */
export async function renderLabel(req: { indicium: Buffer; size: LabelSize; deliveryAddress: string[]; returnAddress?: string[]; format: 'png' | 'pdf' }): Promise<Uint8Array> {
  const res = await fetch('/v1/labels', {
    method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ ...req, indicium: req.indicium.toString('base64') }),
  });
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    throw Object.assign(new Error(body.error?.message ?? `HTTP ${res.status}`), { code: body.error?.code ?? `HTTP_${res.status}` });
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** Reads the indicium from a label file (PNG, JPEG, PDF) on the service, then verifies it. */
export async function verifyLabelFile(req: { bytes: Uint8Array; type: 'png' | 'jpeg' | 'pdf'; bearer?: string; location?: string }): Promise<VerifyAnswer & { recorded?: boolean }> {
  const read = await api.post<{ indicium: string }>('/v1/labels/read', { image: Buffer.from(req.bytes).toString('base64'), type: req.type });
  return verifyIndicium({ indicium: read.indicium, bearer: req.bearer, location: req.location });
}

async function verifyIndicium(req: { indicium: string; bearer?: string; location?: string }): Promise<VerifyAnswer & { recorded?: boolean }> {
  if (!req.bearer) return api.post('/v1/verify', { indicium: req.indicium });
  const http = new HttpClient({ baseUrl: location.origin, fetch: (url, init) => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${req.bearer}` } }) });
  return http.post('/v1/verify', { indicium: req.indicium, ...(req.location ? { location: req.location } : {}) });
}

/** GET with an operator's bearer credential. */
export function operatorGet<T>(path: string, bearer: string): Promise<T> {
  const http = new HttpClient({ baseUrl: location.origin, fetch: (url, init) => fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${bearer}` } }) });
  return http.get<T>(path);
}
