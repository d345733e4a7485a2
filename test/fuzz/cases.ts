import type { Allowances } from './db-state';
import type { RawAnswer, RawRequest } from './http';
import type { LegitMailer, Fixtures } from './legit-mailers';
import type { MutationFamily } from './mutations';
import type { Prng } from './prng';
import type { RouteSpec, SchemaChecker } from './api-routes';

/**
 * One fuzz request and what must hold for its answer, and the strategies that make them.
 * Every case of the fuzzing phase is meant to be refused; `expect: 'any'` marks the few whose
 * input may be acceptable to a read-only route (a quote, a verification with `record: false`).
 */
export type Family = MutationFamily | 'transport' | 'path' | 'method' | 'query' | 'protocol';

export interface FuzzCase {
  /** The route as the OpenAPI document names it, even when the path sent is mangled. */
  route: string;
  family: Family;
  /** What was mutated, for the report. */
  label: string;
  request: RawRequest;
  /** 'reject': a 2xx answer is a finding (an invalid request was accepted). */
  expect: 'reject' | 'any';
  /** An extra check of the answer; returns what is wrong, if anything. */
  check?: (answer: RawAnswer) => string | undefined;
  /** The mailer whose envelope this is (a 2xx answer moves its challenge). */
  mailer?: LegitMailer;
  /** Changes the protocol allows this request to make even when refused. */
  allow: Allowances;
  /** The strategy that made the case (set by the runner; part of a finding's kind). */
  strategy?: string;
}

export interface CaseContext {
  rng: Prng;
  fx: Fixtures;
  routes: Map<string, RouteSpec>;
  schemas: SchemaChecker;
  /** A fresh Idempotency-Key, unique in the run. */
  key(): string;
}

export interface Strategy {
  route: string;
  name: string;
  weight: number;
  /** A case, or undefined when the strategy has nothing to send now (another one is drawn). */
  build(ctx: CaseContext): FuzzCase | undefined;
}

/** The meter ids of the mailers that have not lost track of their challenge (all, if none has). */
export function usableMailers(fx: Fixtures): LegitMailer[] {
  const ok = fx.mailers.filter((m) => !m.desynced);
  return ok.length ? ok : fx.mailers;
}

/** A mailer and another one (for MACs, sessions and payments that are not the first one's). */
export function twoMailers(ctx: CaseContext): [LegitMailer, LegitMailer] {
  const list = usableMailers(ctx.fx);
  const m = ctx.rng.pick(list);
  const others = ctx.fx.mailers.filter((x) => x !== m);
  return [m, others.length ? ctx.rng.pick(others) : m];
}
