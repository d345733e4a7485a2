/**
 * The module's finite state machine (WO 99/41690, Fig. 8), as the status call reports it.
 *
 *   SelfTest ──pass──▶ UnInitialized ──login, keys found──▶ KeyEntry ──▶ Idle ⇄ User
 *      │fail                  ▲                                           │
 *      ▼                      └──────────────── close() ◀────────────────┘
 *    Error  (refuses every command; `reason` says why)
 *
 * CryptoOfficer is the state of a key-ceremony session (SO role); the service never enters it.
 * Inhibited is WO 01/29778's state after a rollback or an edit of the database was found (docs/checkpoint.md): persisted in the token,
 * cleared only by the officer's `ceremony reinstate`.
 */
export const MODULE_STATES = [
  'SelfTest',
  'UnInitialized',
  'KeyEntry',
  'Idle',
  'User',
  'CryptoOfficer',
  'Error',
  'Inhibited',
] as const;
export type ModuleState = (typeof MODULE_STATES)[number];

/** Which states accept which transitions; anything else is a programming error. */
const NEXT: Record<ModuleState, readonly ModuleState[]> = {
  SelfTest: ['UnInitialized', 'Error'],
  UnInitialized: ['KeyEntry', 'CryptoOfficer', 'SelfTest', 'Error'],
  KeyEntry: ['Idle', 'Error', 'UnInitialized'],
  Idle: ['User', 'UnInitialized', 'Error', 'Inhibited', 'KeyEntry'],
  User: ['Idle', 'Error', 'Inhibited', 'UnInitialized', 'KeyEntry'],
  CryptoOfficer: ['UnInitialized', 'Error'],
  Error: ['SelfTest', 'UnInitialized'],
  Inhibited: ['Idle', 'UnInitialized', 'Error'],
};

export class ModuleStateMachine {
  private current: ModuleState = 'SelfTest';
  private why: string | undefined;
  private changedAt = new Date();

  constructor(private readonly now: () => Date = () => new Date()) {}

  get state(): ModuleState {
    return this.current;
  }
  get reason(): string | undefined {
    return this.why;
  }
  get since(): Date {
    return this.changedAt;
  }

  to(next: ModuleState, reason?: string): void {
    if (next === this.current) {
      if (reason) this.why = reason;
      return;
    }
    if (!NEXT[this.current].includes(next)) {
      throw new Error(`module state ${this.current} cannot go to ${next}`);
    }
    this.current = next;
    this.why = reason;
    this.changedAt = this.now();
  }
}
