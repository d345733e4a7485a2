// Over 300 lines: the drill is one script of four losses and their recoveries, read top to bottom as the operator would run them.
/**
 * npm run drill [-- --dir DIR]
 * The disaster-recovery drill (docs/operations.md "The drill"): on a scratch deployment of its own
 * (the service program, its embedded PostgreSQL archiving its WAL, a SoftHSM2 token directory of
 * its own), it provisions two off-site modules and two officers in a key ceremony, lets mailers
 * register, buy, print and refund through the SDK, takes a backup, and then goes through the four
 * losses one after another:
 *   1. the database lost, the WAL archive complete;
 *   2. the database and the archive's tail lost;
 *   3. the module token lost;
 *   4. the site lost: database, archive, backups and the module token (the off-site module, the
 *      off-site copy of the backup and archive, the journal export).
 * Every recovery goes through the operator's programs only (`npm run restore`, `journal`,
 * `ceremony`, the service); the drill itself only causes the losses and checks the outcome:
 * after each recovery every mailer's registers are what its key file holds, every indicium a
 * mailer received is in the database and no other, the postage pool and conservation hold, the
 * journal verifies, and every meter prints again from its registers. It writes its transcript to
 * DIR/drill-transcript.md (the scripts' own transcripts are in DIR/var/transcripts and
 * DIR/var/ceremony) and exits 1 at the first check that fails.
 * DIR defaults to var/drill/<time>; it is left in place for inspection.
 */
import { runMain } from '@vbi/core/cli/run-main';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Knex } from 'knex';
import { Client } from 'pg';
import { VbiClient } from '@vbi/client/client/vbi-client';
import { isVbiError } from '@vbi/core/errors';
import { openDatabase } from '../db/database';
import { conservation } from '../ledger/conservation';
import { ScriptRun, ServiceProcess } from '../ops/service-process';

const PASSWORD = 'drill: correct horse battery staple';
const OFFICERS = ['Alice', 'Bob'];

/** What a mailer holds: its key file, and the indicia it received (id → postage). */
interface Mailer {
  name: string;
  keyFilePath: string;
  client: VbiClient;
  registers: { ascending: number; descending: number };
  indicia: Map<number, number>;
}

/** A token of the drill's deployment with its own PINs (never printed). */
interface Token {
  label: string;
  soPin: string;
  userPin: string;
}

class CheckFailed extends Error {}

class Drill {
  readonly transcript: string;
  private checks = 0;

  constructor(readonly dir: string) {
    this.transcript = join(dir, 'drill-transcript.md');
    writeFileSync(this.transcript, `# Disaster-recovery drill\n\nstarted ${new Date().toISOString()} in ${dir}\n`);
  }

  log(text: string): void {
    appendFileSync(this.transcript, `${text}\n`);
    process.stdout.write(`${text}\n`);
  }

  section(title: string): void {
    this.log(`\n## ${title}\n`);
  }

  check(ok: boolean, what: string, detail = ''): void {
    this.checks++;
    this.log(`- ${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `: ${detail}` : ''}`);
    if (!ok) throw new CheckFailed(`${what}${detail ? `: ${detail}` : ''}`);
  }

  equal(actual: unknown, expected: unknown, what: string): void {
    const a = JSON.stringify(actual);
    const e = JSON.stringify(expected);
    this.check(a === e, what, `expected ${e}, got ${a}`);
  }

  /** Runs an operator's program, logs it (command, exit code, output) and checks its exit code. */
  async run(label: string, p: Promise<ScriptRun>, expectCode = 0): Promise<ScriptRun> {
    const r = await p;
    const out = (r.stdout + r.stderr).trimEnd().split('\n').filter((l) => l.length > 0);
    this.log(`\n\`\`\`\n$ ${label}    # exit ${r.code}\n${out.slice(0, 40).join('\n')}${out.length > 40 ? `\n… (${out.length - 40} more lines)` : ''}\n\`\`\``);
    this.check(r.code === expectCode, `\`${label}\` exits ${expectCode}`, r.stderr.trim() || r.stdout.trim());
    return r;
  }

  get checked(): number {
    return this.checks;
  }
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function token(label: string): Token {
  return { label, soPin: randomBytes(8).toString('hex'), userPin: randomBytes(8).toString('hex') };
}

async function main(): Promise<number> {
  const dir = resolve(option('--dir') ?? join(__dirname, '..', '..', '..', '..', '..', 'var', 'drill', new Date().toISOString().replace(/[:.]/g, '-')));
  mkdirSync(dir, { recursive: true });
  // as root the embedded server runs as 'postgres', which must reach DIR/var/pgdata
  for (let d = dir; d !== '/'; d = resolve(d, '..')) chmodSync(d, statSync(d).mode | 0o001);
  const drill = new Drill(dir);
  const service = await ServiceProcess.create(dir);
  const offsite = join(dir, 'offsite');
  mkdirSync(offsite, { recursive: true });
  // the journal export is written off-site from the start; the tests switch WAL segments themselves
  service.env = { VBI_ARCHIVE_TIMEOUT: '3600', VBI_JOURNAL_EXPORT_DIR: join(offsite, 'journal-export') };
  const mailers: Mailer[] = [];
  try {
    await runDrill(drill, service, offsite, mailers);
    drill.log(`\n**Drill passed**: ${drill.checked} checks, finished ${new Date().toISOString()}.`);
    return 0;
  } catch (e) {
    drill.log(`\n**Drill FAILED**: ${e instanceof CheckFailed ? e.message : (e as Error).stack}`);
    if (!(e instanceof CheckFailed)) drill.log(`\nservice log:\n\`\`\`\n${service.log.slice(-4000)}\n\`\`\``);
    return 1;
  } finally {
    for (const m of mailers) m.client.stopHeartbeats();
    await service.stop();
    process.stdout.write(`transcript ${drill.transcript}\n`);
  }
}

async function runDrill(drill: Drill, service: ServiceProcess, offsite: string, mailers: Mailer[]): Promise<void> {
  const dev = 'vbi-dev-module';
  const module1 = token('vbi-offsite-1');
  const module2 = token('vbi-offsite-2');
  const officers = OFFICERS.map((name) => ({ name, token: token(`officer-${name.toLowerCase()}`) }));

  // --- the deployment -----------------------------------------------------------------------
  drill.section('The deployment: dev module, two off-site modules, two officers');
  await service.start(); // provisions the dev module token, the dev CA and vendor tokens
  await service.stop();
  const pins = (t: Token): NodeJS.ProcessEnv => ({ VBI_SO_PIN: t.soPin, PKCS11_USER_PIN: t.userPin });
  for (const m of [module1, module2]) {
    await drill.run(`ceremony init-token --label ${m.label}`, service.runCeremony(['init-token', '--label', m.label, '--officer', 'Sam SO'], pins(m)));
    await drill.run(`ceremony generate --label ${m.label} --own-keys`, service.runCeremony(['generate', '--label', m.label, '--officer', 'Sam SO', '--own-keys'], pins(m)));
    await drill.run(`ceremony clone --from ${dev} --to ${m.label}`, service.runCeremony(['clone', '--from', dev, '--to', m.label, '--officer', 'Sam SO'], {
      VBI_SO_PIN_TO: m.soPin, PKCS11_USER_PIN_TO: m.userPin,
    }));
  }
  const keyArgs: string[] = [];
  for (const o of officers) {
    const file = join(service.dir, 'officers', `${o.name}.pub.pem`);
    await drill.run(`ceremony init-token --label ${o.token.label}`, service.runCeremony(['init-token', '--label', o.token.label, '--officer', o.name], pins(o.token)));
    await drill.run(`ceremony officer-key --label ${o.token.label} --officer ${o.name}`, service.runCeremony(['officer-key', '--label', o.token.label, '--officer', o.name, '--out', file], pins(o.token)));
    keyArgs.push('--officer-key', `${o.name}=${file}`);
  }
  for (const m of [module1, module2]) {
    await drill.run(`ceremony install-officers --label ${m.label} --threshold 2`, service.runCeremony(['install-officers', '--label', m.label, '--officer', 'Sam SO', '--threshold', '2', ...keyArgs], pins(m)));
  }

  // --- traffic, backup, more traffic ---------------------------------------------------------
  drill.section('Traffic, a backup, more traffic');
  await service.start();
  for (let i = 0; i < 2; i++) {
    const keyFilePath = join(service.dir, `mailer-${i}.key`);
    const client = await VbiClient.register({
      baseUrl: service.url, rootCertPem: service.rootPem, name: `Drill mailer ${i}`, licensingZip: '20260', returnAddress: ['Drill', '1 Main St'],
      password: PASSWORD, keyFilePath,
    });
    const m: Mailer = { name: `mailer ${i} (${client.meterId})`, keyFilePath, client, registers: { ascending: 0, descending: 0 }, indicia: new Map() };
    mailers.push(m);
    await client.buy({ amount: 100_000, payment: { kind: 'card', token: 'tok_approve' } });
    await print(m, [300, 450]);
    await m.client.refund({ kind: 'partial', amount: 5, reason: 'drill: spoiled label' });
    await holdings(m);
  }
  drill.log(`registered, bought, printed, refunded: ${mailers.map((m) => `${m.name} AR ${m.registers.ascending} DR ${m.registers.descending}`).join('; ')}`);
  await drill.run('backup', service.runScript('backup'));
  await archiveEverything(service);
  // the off-site copy: the backup and the archive as far as it goes now
  cpSync(join(service.varDir, 'backups'), join(offsite, 'backups'), { recursive: true });
  cpSync(join(service.varDir, 'wal-archive'), join(offsite, 'wal-archive'), { recursive: true });
  drill.log(`off-site copy of the backup and the WAL archive in ${offsite}`);
  await traffic(drill, mailers, 520, 25_000);

  // --- 1 -----------------------------------------------------------------------------------
  drill.section('1. The database lost, the WAL archive complete: restore to latest');
  await archiveEverything(service);
  let before = await state(service);
  await loseDatabase(drill, service);
  await drill.run('restore --to latest', service.runScript('restore', ['--to', 'latest']));
  await service.start();
  await expectRecovered(drill, service, mailers, before);
  await traffic(drill, mailers, 610, 0);

  // --- 2 -----------------------------------------------------------------------------------
  drill.section('2. The database and the archive\'s tail lost: restore to the last point available, replay the journal export');
  const mark = await archiveEverything(service);
  // a copy of a key file as it was at the point the archive will end: the state a rolled-back
  // database would match, and the one a replay must not let print again from its older registers
  const oldCopy = `${mailers[0].keyFilePath}.at-mark`;
  cpSync(mailers[0].keyFilePath, oldCopy);
  const oldRegisters = { ...mailers[0].registers };
  await traffic(drill, mailers, 130, 10_000);
  await archiveEverything(service);
  await drill.run('journal export', service.runScript('journal', ['export']));
  before = await state(service);
  await loseDatabase(drill, service);
  const tail = readdirSync(join(service.varDir, 'wal-archive')).filter((f) => /^[0-9A-F]{24}$/.test(f) && f > mark);
  for (const f of tail) rmSync(join(service.varDir, 'wal-archive', f));
  drill.check(tail.length > 0, `the archive's tail lost: ${tail.length} segment(s) after ${mark} deleted`);
  await drill.run('restore --to latest', service.runScript('restore', ['--to', 'latest']));
  await drill.run('journal verify', service.runScript('journal', ['verify']));
  const replay2 = JSON.parse((await drill.run('journal replay --json', service.runScript('journal', ['replay', '--json']))).stdout) as ReplayReport;
  drill.check(replay2.replayed > 0, `the replay rolled the database forward (${replay2.replayed} records)`);
  drill.equal(replay2.modules.map((m) => m.state), replay2.modules.map(() => 'in-step'), 'every module\'s ring is in step with the rebuilt database: nothing presumed spent');
  await drill.run('verify-journal', service.runScript('verify-journal'));
  await service.start();
  await expectRecovered(drill, service, mailers, before);
  // nothing spent twice: the old copy prints from the registers the module holds now, not from its own
  const stale = await VbiClient.open({ keyFilePath: oldCopy, password: PASSWORD });
  const staleMailer: Mailer = { ...mailers[0], name: `${mailers[0].name}, the copy of its key file from before the lost tail`, keyFilePath: oldCopy, client: stale, indicia: mailers[0].indicia };
  await print(staleMailer, [75]);
  await holdings(staleMailer);
  drill.check(mailers[0].registers.ascending > oldRegisters.ascending, `the copy is behind the meter: it held AR ${oldRegisters.ascending} DR ${oldRegisters.descending}, the meter AR ${mailers[0].registers.ascending} DR ${mailers[0].registers.descending}`);
  drill.equal(staleMailer.registers, { ascending: mailers[0].registers.ascending + 75, descending: mailers[0].registers.descending - 75 },
    'the old key file copy prints on from the module\'s current registers (its own older DR is not spent again)');
  stale.stopHeartbeats();
  mailers[0].registers = staleMailer.registers;
  await traffic(drill, mailers, 240, 0);

  // --- 3 -----------------------------------------------------------------------------------
  drill.section('3. The module token lost: the off-site module takes over with the officers\' approval');
  before = await state(service);
  await service.stop();
  deleteToken(drill, service, dev);
  service.env = { ...service.env, PKCS11_TOKEN_LABELS: module1.label, PKCS11_USER_PIN: module1.userPin };
  await takeOver(drill, service, mailers, module1, officers, before);
  await traffic(drill, mailers, 340, 5_000);

  // --- 4 -----------------------------------------------------------------------------------
  drill.section('4. The site lost: database, WAL archive, backups and module token; the off-site module, backup, archive copy and journal export remain');
  await drill.run('journal export', service.runScript('journal', ['export']));
  before = await state(service);
  await loseDatabase(drill, service);
  rmSync(join(service.varDir, 'wal-archive'), { recursive: true, force: true });
  rmSync(join(service.varDir, 'backups'), { recursive: true, force: true });
  deleteToken(drill, service, module1.label);
  drill.log('the WAL archive and the backups on the site deleted');
  service.env = {
    ...service.env, PKCS11_TOKEN_LABELS: module2.label, PKCS11_USER_PIN: module2.userPin,
    VBI_BACKUP_DIR: join(offsite, 'backups'), VBI_WAL_ARCHIVE_DIR: join(offsite, 'wal-archive'),
  };
  await drill.run('restore --to latest   (the off-site backup and archive)', service.runScript('restore', ['--to', 'latest']));
  await drill.run('journal verify', service.runScript('journal', ['verify']));
  const replay4 = JSON.parse((await drill.run('journal replay --json', service.runScript('journal', ['replay', '--json']))).stdout) as ReplayReport;
  drill.check(replay4.replayed > 0, `the replay rolled the database forward (${replay4.replayed} records)`);
  drill.check(replay4.modules.every((m) => m.state === 'in-step' || m.state === 'not-configured')
    && replay4.modules.filter((m) => m.state === 'not-configured').length === 2,
  'the two lost modules are not configured, the off-site module is in step; nothing presumed spent', JSON.stringify(replay4.modules.map((m) => [m.moduleSerial, m.state])));
  await drill.run('verify-journal', service.runScript('verify-journal'));
  await takeOver(drill, service, mailers, module2, officers, before);
  // the export carried the modules' signed audit records: scenario 3's reinstatement is on record again
  const db = await openDatabase({ varDir: service.varDir, poolSize: 1 });
  try {
    const reinstated = await db.knex('audit_log').where({ kind: 'module-reinstated' }).orderBy('audit_id').select('module_serial');
    drill.equal(reinstated.length, 2, 'both officer-approved reinstatements (scenarios 3 and 4) are in the audit log');
  } finally {
    await db.close();
  }
  await traffic(drill, mailers, 150, 0);
}

interface ReplayReport {
  replayed: number;
  modules: Array<{ moduleSerial: string; state: string; missing: unknown[] }>;
}

/** A module whose ring is empty takes over the database: refused until two officers approve. */
async function takeOver(drill: Drill, service: ServiceProcess, mailers: Mailer[], module: Token, officers: Array<{ name: string; token: Token }>, before: State): Promise<void> {
  await service.start();
  // its first command finds the database's meter map ahead of its empty ring: it inhibits itself
  const refused = await print(mailers[0], [100]).then(() => undefined, (e: unknown) => e);
  drill.check(isVbiError(refused) && (refused.code === 'NO_MODULE' || refused.code === 'UNKNOWN_MODULE'), `a print before the officers approved is refused (${isVbiError(refused) ? refused.code : 'no error'})`, String(refused));
  const health = await modulesHealth(service);
  drill.check(health.length === 1 && health[0].state === 'Inhibited' && !health[0].inRotation, `module '${module.label}' inhibited itself: ${health[0]?.reason ?? ''}`, health.map((m) => `${m.serial} ${m.state}`).join('; '));
  drill.equal(await indiciaCount(service), before.indicia, 'no indicium was written by the refused print');
  await service.stop();
  const request = join(service.dir, `approval-request-${module.label}.json`);
  const userPin = { PKCS11_USER_PIN: module.userPin };
  await drill.run(`ceremony approval-request --label ${module.label} --accept-checkpoint none`, service.runCeremony(['approval-request', '--label', module.label, '--accept-checkpoint', 'none', '--out', request], userPin));
  const approvals: string[] = [];
  for (const o of officers) {
    const file = join(service.dir, `approval-${module.label}-${o.name}.json`);
    await drill.run(`ceremony approve --label ${o.token.label} --officer ${o.name}`, service.runCeremony(['approve', '--label', o.token.label, '--officer', o.name, '--request', request, '--out', file], { PKCS11_USER_PIN: o.token.userPin }));
    approvals.push('--approval', file);
    if (approvals.length === 2) {
      const one = await drill.run(`ceremony reinstate --label ${module.label} (one officer's approval)`, service.runCeremony(['reinstate', '--label', module.label, '--officer', 'Sam SO', '--accept-checkpoint', 'none', ...approvals], { VBI_SO_PIN: module.soPin, PKCS11_USER_PIN: module.userPin }), 1);
      drill.check(one.stderr.startsWith('OFFICER_APPROVAL_REQUIRED'), 'one officer alone cannot reinstate it (OFFICER_APPROVAL_REQUIRED)', one.stderr);
    }
  }
  await drill.run(`ceremony reinstate --label ${module.label} (two officers' approvals)`, service.runCeremony(['reinstate', '--label', module.label, '--officer', 'Sam SO', '--accept-checkpoint', 'none', ...approvals], { VBI_SO_PIN: module.soPin, PKCS11_USER_PIN: module.userPin }));
  await service.start();
  await expectRecovered(drill, service, mailers, before);
}

/** Registers and indicia as the mailers hold them, the pool and the journal, before a loss. */
interface State {
  pool: unknown;
  indicia: number;
}

/** Read from the database only: a balance inquiry would itself be journaled work. */
async function state(service: ServiceProcess): Promise<State> {
  const db = await openDatabase({ varDir: service.varDir, poolSize: 1 });
  try {
    return { pool: await db.knex('pool').first('purchased', 'available', 'refunds_paid'), indicia: await countIndicia(db.knex) };
  } finally {
    await db.close();
  }
}

async function countIndicia(knex: Knex): Promise<number> {
  const rows = await knex('indicia').count<{ n: string }[]>({ n: '*' });
  return Number(rows[0].n);
}

async function indiciaCount(service: ServiceProcess): Promise<number> {
  const db = await openDatabase({ varDir: service.varDir, poolSize: 1 });
  try {
    return await countIndicia(db.knex);
  } finally {
    await db.close();
  }
}

/** After a recovery: what every mailer holds is what the database says, and every meter prints on. */
async function expectRecovered(drill: Drill, service: ServiceProcess, mailers: Mailer[], before: State): Promise<void> {
  const health = await modulesHealth(service);
  drill.check(health.length > 0 && health.every((m) => m.inRotation), `the service's module(s) in rotation: ${health.map((m) => `${m.serial} ${m.state}`).join(', ')}`, health.map((m) => `${m.serial} ${m.state} ${m.reason ?? ''}`).join('; '));
  const db = await openDatabase({ varDir: service.varDir, poolSize: 2 });
  try {
    for (const m of mailers) {
      m.client.stopHeartbeats();
      m.client = await VbiClient.open({ keyFilePath: m.keyFilePath, password: PASSWORD });
      const b = await m.client.balance();
      drill.equal({ ascending: b.ascending, descending: b.descending }, m.registers, `${m.name}: the registers are what its key file holds`);
      const rows = await db.knex('indicia').where({ meter_id: m.client.meterId }).orderBy('indicium_id').select('indicium_id', 'postage');
      drill.equal(rows.map((r) => [Number(r.indicium_id), Number(r.postage)]), [...m.indicia.entries()].sort((a, b) => a[0] - b[0]), `${m.name}: exactly the indicia it received are in the database`);
    }
    drill.equal(await db.knex('pool').first('purchased', 'available', 'refunds_paid'), before.pool, 'the postage pool is as before the loss');
    drill.equal(await countIndicia(db.knex), before.indicia, 'no indicium more or less than before the loss');
    drill.equal((await conservation(db.knex)).violations, [], 'conservation: every register and the pool add up');
  } finally {
    await db.close();
  }
  await drill.run('verify-journal', service.runScript('verify-journal'));
}

/** Each mailer buys (if `buy`) and prints one item of `postage`; what it then holds is recorded. */
async function traffic(drill: Drill, mailers: Mailer[], postage: number, buy: number): Promise<void> {
  for (const m of mailers) {
    if (buy > 0) await m.client.buy({ amount: buy, payment: { kind: 'card', token: 'tok_approve' } });
    await print(m, [postage]);
    await holdings(m);
  }
  drill.log(`traffic: ${buy > 0 ? `bought ${buy} mills, ` : ''}printed ${postage} mills each; ${mailers.map((m) => `${m.name} AR ${m.registers.ascending} DR ${m.registers.descending}`).join('; ')}`);
  drill.check(mailers.every((m) => m.registers.ascending > 0), 'every meter printed from its registers');
}

async function print(m: Mailer, postages: number[]): Promise<void> {
  await m.client.openSession({ heartbeats: false });
  try {
    const out = await m.client.print(postages.map((postage, i) => ({ destinationZip: `1000${i + 1}`, postage })));
    if (out.printed !== postages.length) throw new Error(`${m.name}: ${out.printed} of ${postages.length} printed: ${JSON.stringify(out.items.map((x) => x.reason ?? x.status))}`);
    for (const [i, item] of out.items.entries()) m.indicia.set(item.indiciumId as number, postages[i]);
  } finally {
    await m.client.closeSession();
  }
}

async function holdings(m: Mailer): Promise<void> {
  const b = await m.client.balance();
  m.registers = { ascending: b.ascending, descending: b.descending };
}

interface ModuleHealth {
  serial: string;
  state: string;
  inRotation: boolean;
  reason?: string;
}

async function modulesHealth(service: ServiceProcess): Promise<ModuleHealth[]> {
  const health = await (await fetch(`${service.url}/v1/health`)).json() as { modules: ModuleHealth[] };
  return health.modules;
}

/** The database's directory lost: service and server killed, directory deleted. */
async function loseDatabase(drill: Drill, service: ServiceProcess): Promise<void> {
  await service.kill();
  await service.killDatabaseAndWait();
  rmSync(join(service.varDir, 'pgdata'), { recursive: true, force: true });
  drill.log('the service and its PostgreSQL killed (SIGKILL); the data directory deleted');
}

/** A module token lost (SoftHSM2: its token directory deleted, through softhsm2-util). */
function deleteToken(drill: Drill, service: ServiceProcess, label: string): void {
  execFileSync('softhsm2-util', ['--delete-token', '--token', label], { env: { ...process.env, SOFTHSM2_CONF: join(service.dir, 'softhsm2.conf') }, stdio: 'pipe' });
  const left = execFileSync('softhsm2-util', ['--show-slots'], { env: { ...process.env, SOFTHSM2_CONF: join(service.dir, 'softhsm2.conf') } }).toString();
  drill.check(!left.includes(`Label:            ${label}`) && !new RegExp(`Label:\\s+${label}\\s*$`, 'm').test(left), `module token '${label}' deleted`);
}

/** Switches to a new WAL segment and waits until the archive holds it; returns its name. */
async function archiveEverything(service: ServiceProcess): Promise<string> {
  const db = await openDatabase({ varDir: service.varDir, poolSize: 1 });
  const url = db.url;
  await db.close(); // shares the service's running cluster: closing leaves it running
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows: [s] } = await client.query(`SELECT pg_walfile_name(pg_switch_wal()) AS seg`);
    for (let i = 0; ; i++) {
      const { rows: [a] } = await client.query(`SELECT last_archived_wal FROM pg_stat_archiver`);
      if (a.last_archived_wal !== null && a.last_archived_wal >= s.seg) return s.seg as string;
      if (i > 600) throw new Error(`segment ${s.seg} not archived (last ${a.last_archived_wal})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await client.end();
  }
}

if (require.main === module) {
  if (!existsSync(join(__dirname, '..', '..', '..', '..', '..', 'var', 'dev.env'))) {
    process.stderr.write('run it as `npm run drill` (scripts/bootstrap.sh installs SoftHSM2 and writes var/dev.env first)\n');
    process.exit(2);
  }
  runMain(main);
}
