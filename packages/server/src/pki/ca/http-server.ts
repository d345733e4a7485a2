import { AddressInfo } from 'node:net';
import { Server } from 'node:http';
import express, { NextFunction, Request, Response } from 'express';
import { isVbiError } from '@vbi/core/errors';
import { CA_REQUEST_PATH, decodeRequest, encodeResponse } from '../ca-protocol';
import { PostalCa } from './postal-ca';

/**
 * The dev/test CA as its own express app (its own port, apart from the service):
 *   POST /v1/certificates   certificate request (packages/server/src/pki/ca-protocol.ts)
 *   GET  /v1/ca             { chain: [issuing, root] } base64 DER, for information only
 */
export function createCaApp(ca: PostalCa): express.Express {
  const app = express();
  app.use(express.json({ limit: '64kb' }));
  app.post(CA_REQUEST_PATH, async (req: Request, res: Response, next: NextFunction) => {
    try {
      const issued = await ca.issue(decodeRequest(req.body));
      res.status(201).json(encodeResponse(issued));
    } catch (e) {
      next(e);
    }
  });
  app.get('/v1/ca', (_req: Request, res: Response) => {
    res.json({ chain: ca.chain().map((c) => c.toString('base64')) });
  });
  // Registry errors keep their status and code; anything else is a 500 without details.
  app.use((e: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (isVbiError(e)) {
      res.status(e.status).json(e.toJSON());
      return;
    }
    const status = (e as { status?: number })?.status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      res.status(status).json({ code: 'BAD_REQUEST', message: `request body rejected (${(e as { type?: string }).type ?? 'invalid'})` });
      return;
    }
    res.status(500).json({ code: 'CA_UNAVAILABLE', message: 'internal CA error' });
  });
  return app;
}

/** A listening CA server: its base URL (CA_URL) and how to stop it. */
export interface RunningCa {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on host:port (port 0 = any free port) and resolves once the socket is bound. */
export function startCaServer(req: { ca: PostalCa; host?: string; port?: number }): Promise<RunningCa> {
  const host = req.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const server: Server = createCaApp(req.ca).listen(req.port ?? 0, host);
    server.once('error', reject);
    server.once('listening', () => {
      const port = (server.address() as AddressInfo).port;
      resolve({
        url: `http://${host}:${port}`,
        port,
        close: () => new Promise<void>((done) => {
          server.closeAllConnections();
          server.close(() => done());
        }),
      });
    });
  });
}
