import express from 'express';
import { loadConfig } from './config/config';
import { createService } from './service';
import { isVbiError } from './errors';

/**
 * `npm start`: provisions the SoftHSM2 dev token when absent, powers the modules on
 * (self-tests, key entry, checkpoint ring), prints their status and serves it at /v1/health.
 * Later issues grow this into the full HTTP service.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const service = await createService({ config });
  const status = service.status();
  for (const m of status.modules) {
    const tests = m.selfTest ? `${m.selfTest.results.filter((r) => r.ok).length}/${m.selfTest.results.length} self-tests passed` : 'self-tests not run';
    process.stdout.write(`module '${m.tokenLabel}' serial ${m.serial}: ${m.state}${m.reason ? ` (${m.reason})` : ''}; ${tests}; ring ${m.ring.entries}/${m.ring.size}\n`);
  }
  const app = express();
  app.get('/v1/health', (_req, res) => {
    const s = service.status();
    const ok = s.modules.some((m) => m.state === 'Idle' || m.state === 'User');
    res.status(ok ? 200 : 503).json(s);
  });
  const port = Number(process.env.PORT ?? 8080);
  const server = app.listen(port, '127.0.0.1', () => {
    process.stdout.write(`listening on http://127.0.0.1:${port}  (try: curl http://127.0.0.1:${port}/v1/health)\n`);
  });
  const stop = () => {
    server.close();
    void service.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((e) => {
  process.stderr.write(isVbiError(e) ? `${e.code}: ${e.message}\n` : `${(e as Error).stack}\n`);
  process.exit(1);
});
