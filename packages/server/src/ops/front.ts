import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, IncomingHttpHeaders, IncomingMessage, request, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { openDatabase } from '../db/database';
import { errorBody } from '../api/http-errors';
import { meterNamed } from '../api/shard-redirect';
import { shardOfMeter } from '../config/shard';
import { vbiError } from '@vbi/core/errors';
import { ShardOwners } from '../ledger/shard-owners';
import { defaultWalArchive } from '../db/wal-archive';
import type { FrontSettings } from '../config/server-settings';
import { freePort } from './service-process';

/** Largest request body the front buffers (a label image for the verify page is the largest). */
const BODY_LIMIT = 16 << 20;
/** Wait before a worker that exited is started again. */
const RESTART_DELAY_MS = 1_000;

/** One worker as the front sees it (also written to <varDir>/workers.json). */
export interface WorkerInfo {
  shard: number;
  url: string;
  pid: number | null;
  /** Listening now. */
  up: boolean;
  /** Times it was started again after it exited. */
  restarts: number;
}

/**
 * `npm start -- --workers N` (docs/operations.md, "Several processes, several tokens"): N service
 * processes on this machine, worker i serving shard i with its own tokens, all on one database,
 * and one front that clients talk to.
 *
 * - The database: DATABASE_URL, or the var directory's embedded PostgreSQL, started here; every
 *   worker is given its URL.
 * - Workers: `node packages/server/dist/src/bin/main.js` with VBI_SHARD=i, a port of its own, VBI_PUBLIC_URL (its
 *   address), VBI_TRUST_PROXY=loopback (the client's address comes from X-Forwarded-For) and, when
 *   VBI_SHARD_TOKENS says so (`0=labelA,labelB;1=labelC,...`), its shard's tokens. Worker 0 starts
 *   first (on the embedded defaults it serves the dev CA the others use). A worker that exits is
 *   started again after a second: the new process takes the shard's free lease, claims the shard
 *   (a new ownership epoch), reconciles the rings and serves.
 * - The front: a request that names a meter (packages/server/src/api/shard-redirect.ts) goes to the process that
 *   serves the meter's shard (`public.shard_owners`); any other request to the next worker that is
 *   up, in turn (new registrations in turns of their own). A shard whose process is down answers SHARD_UNAVAILABLE (503, Retry-After: 1).
 *   Bodies are buffered (at most 16 MiB) and forwarded unchanged, with X-Forwarded-For.
 */
export async function runFront(opts: {
  workers: number; host: string; port: number; varDir: string;
  /** What the environment says (packages/server/src/config/server-settings.ts, frontSettings). */
  settings: FrontSettings;
  /** The workers' environment (each worker's own variables set over it). */
  env: NodeJS.ProcessEnv; program: string; log: (line: string) => void;
}): Promise<{ url: string; workers(): WorkerInfo[]; close(): Promise<void> }> {
  if (opts.settings.tlsNamed) {
    throw vbiError('CONFIG_INVALID', 'the front (--workers) speaks plain HTTP to clients and workers: terminate TLS in front of it, and unset VBI_TLS_CERT and VBI_TLS_KEY');
  }
  const db = await openDatabase({ url: opts.settings.databaseUrl, varDir: opts.varDir, archive: defaultWalArchive(opts.varDir), log: opts.settings.dbLog });
  const directory = opts.settings.directoryUrl ? await ShardOwners.at(opts.settings.directoryUrl) : undefined;
  const owners = directory ?? new ShardOwners(db.knex, 1_000);
  const tokens = opts.settings.shardTokens();
  const workers: Worker[] = [];
  let closing = false;
  const file = join(opts.varDir, 'workers.json');
  const record = () => writeFileSync(file, JSON.stringify(workers.map((w) => w.info()), null, 2));
  try {
    for (let shard = 0; shard < opts.workers; shard++) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      workers.push(new Worker(shard, url, opts.program, {
        ...opts.env, DATABASE_URL: db.url, VBI_SHARD: String(shard), PORT: String(port), HOST: '127.0.0.1', VBI_PUBLIC_URL: url, VBI_TRUST_PROXY: 'loopback',
        ...(tokens.has(shard) ? { PKCS11_TOKEN_LABELS: tokens.get(shard) } : {}),
      }, opts.log, () => closing, record));
    }
    await workers[0].start();
    await Promise.all(workers.slice(1).map((w) => w.start()));
  } catch (e) {
    closing = true;
    await Promise.all(workers.map((w) => w.stop()));
    await directory?.close();
    await db.close();
    throw e;
  }
  record();

  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  // registrations take turns of their own (a client registering sends a GET before its POST: one
  // turn for all would send every registration to the same workers), everything else another
  const turns = new Map<string, number>();
  const anyWorker = (route: string): string | null => {
    const turn = turns.get(route) ?? 0;
    for (let k = 0; k < workers.length; k++) {
      const w = workers[(turn + k) % workers.length];
      if (w.up) {
        turns.set(route, (turn + k + 1) % workers.length);
        return w.url;
      }
    }
    return null;
  };
  const fail = (res: ServerResponse, code: 'SHARD_UNAVAILABLE' | 'BODY_TOO_LARGE' | 'BAD_REQUEST', message: string) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const e = vbiError(code, message);
    res.writeHead(e.status, { 'content-type': 'application/json; charset=utf-8', ...(code === 'SHARD_UNAVAILABLE' ? { 'retry-after': '1' } : {}) });
    res.end(JSON.stringify(errorBody(e)));
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void forward(req, res).catch((e: Error) => fail(res, 'SHARD_UNAVAILABLE', `the front could not forward the request: ${e.message}`));
  });
  async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > BODY_LIMIT) return fail(res, 'BODY_TOO_LARGE', `request bodies through the front are at most ${BODY_LIMIT} bytes`);
      chunks.push(c as Buffer);
    }
    const body = Buffer.concat(chunks);
    const path = req.url ?? '/';
    let json: unknown;
    if (body.length > 0 && /json/i.test(req.headers['content-type'] ?? '')) {
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        json = undefined; // the worker answers it
      }
    }
    const meterId = meterNamed(path.split('?')[0], json);
    const shard = meterId === undefined ? undefined : shardOfMeter(meterId);
    const registration = req.method === 'POST' && path.split('?')[0] === '/v1/registrations';
    const target = shard === undefined ? anyWorker(registration ? 'registration' : 'other') : await owners.urlOf(shard);
    if (!target) return fail(res, 'SHARD_UNAVAILABLE', shard === undefined ? 'no worker is up' : `no process serves shard ${shard} now`);
    const to = new URL(path, target);
    const forwardedFor = [req.headers['x-forwarded-for'], req.socket.remoteAddress].filter(Boolean).join(', ');
    await new Promise<void>((resolve) => {
      const out = request(to, {
        method: req.method, agent,
        headers: { ...endToEnd(req.headers), host: to.host, 'x-forwarded-for': forwardedFor, 'content-length': String(body.length) },
      }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
        answer.pipe(res);
        answer.on('end', resolve);
        answer.on('error', () => {
          res.destroy();
          resolve();
        });
      });
      out.on('error', (e) => {
        // the shard's process is down (killed, restarting): the client retries
        fail(res, 'SHARD_UNAVAILABLE', `shard ${shard ?? '?'}: ${e.message}`);
        resolve();
      });
      out.end(body);
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${addr.address}:${addr.port}`,
    workers: () => workers.map((w) => w.info()),
    close: async () => {
      closing = true;
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      agent.destroy();
      await Promise.all(workers.map((w) => w.stop()));
      await directory?.close();
      await db.close();
    },
  };
}

/** Headers without the hop-by-hop ones (RFC 9110 7.6.1), which each connection sets for itself. */
function endToEnd(h: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  }
  return out;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length']);

/** One worker process: started, watched, started again when it exits (unless the front is closing). */
class Worker {
  private child: ChildProcess | undefined;
  up = false;
  private restarts = 0;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly shard: number, readonly url: string, private readonly program: string, private readonly env: NodeJS.ProcessEnv,
    private readonly log: (line: string) => void, private readonly closing: () => boolean, private readonly changed: () => void,
  ) {}

  info(): WorkerInfo {
    return { shard: this.shard, url: this.url, pid: this.child?.pid ?? null, up: this.up, restarts: this.restarts };
  }

  /** Starts the process and resolves once it listens; rejects if it exits first. */
  start(): Promise<void> {
    // the IPC channel closes when the front dies, and the worker stops then (packages/server/src/bin/main.ts)
    const child = spawn(process.execPath, [this.program], { env: this.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    this.child = child;
    let pending = '';
    const lines = (b: Buffer) => {
      pending += b.toString();
      const all = pending.split('\n');
      pending = all.pop() ?? '';
      for (const l of all) this.log(`[shard ${this.shard}] ${l}`);
      return all;
    };
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    return new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (b: Buffer) => {
        if (!this.up && lines(b).some((l) => l.startsWith('listening on '))) {
          this.up = true;
          this.changed();
          resolve();
        }
      });
      child.stderr!.on('data', (b: Buffer) => lines(b));
      child.once('exit', (code, signal) => {
        const wasUp = this.up;
        this.up = false;
        this.changed();
        if (!wasUp) reject(vbiError('INTERNAL', `the worker of shard ${this.shard} exited (${signal ?? code}) before it listened`));
        if (this.closing()) return;
        this.log(`[front] the worker of shard ${this.shard} exited (${signal ?? code}); starting it again`);
        setTimeout(() => {
          if (this.closing()) return;
          this.restarts++;
          this.start().catch((e: Error) => this.log(`[front] shard ${this.shard}: ${e.message}`));
        }, RESTART_DELAY_MS);
      });
    });
  }

  /** SIGINT (the service's clean stop), then waits for the exit. */
  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGINT');
    await this.exited;
  }
}
