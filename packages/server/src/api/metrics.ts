import type { Request, RequestHandler, Response } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics for the HTTP API: one registry per service (never prom-client's global
 * one, so tests and several services in one process stay apart), a request counter and a
 * latency histogram by method, route pattern and status, the text exposition for
 * GET /v1/metrics, and gauges the rest of the service registers (module states, pool level).
 */
export interface MetricsOptions {
  /** Prefix of every metric name; default 'vbi_'. */
  prefix?: string;
  /** Also collect prom-client's process metrics (CPU, memory, event loop); default false. */
  defaultMetrics?: boolean;
  /** Latency buckets in seconds. */
  buckets?: number[];
}

/** One labelled sample of a gauge. */
export interface GaugeSample<L extends string> {
  labels: Partial<Record<L, string | number>>;
  value: number;
}

/** A gauge whose value is read when Prometheus scrapes. */
export interface GaugeDefinition<L extends string> {
  /** Without the prefix, e.g. 'module_state'. */
  name: string;
  help: string;
  labelNames?: readonly L[];
  /** Called on every scrape: one number, or one sample per label set (the gauge is reset first). */
  collect: () => number | GaugeSample<L>[] | Promise<number | GaugeSample<L>[]>;
}

/** Route label of a request: the matched route pattern, never the raw path (bounded cardinality). */
export function routeLabel(req: Request): string {
  const route = (req as Request & { route?: { path?: unknown } }).route;
  if (!route || typeof route.path !== 'string') return 'unmatched';
  return `${req.baseUrl}${route.path}`;
}

/** The service's metrics: one instance per service, mounted with middleware() and served by handler(). */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly prefix: string;
  private readonly requests: Counter<'method' | 'route' | 'status'>;
  private readonly latency: Histogram<'method' | 'route' | 'status'>;

  constructor(opts: MetricsOptions = {}) {
    this.prefix = opts.prefix ?? 'vbi_';
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: this.prefix });
    this.requests = new Counter({
      name: `${this.prefix}http_requests_total`,
      help: 'HTTP requests answered, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: `${this.prefix}http_request_duration_seconds`,
      help: 'HTTP request latency until the answer was sent, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: opts.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
  }

  /** Mount first: counts and times every request when its answer has been sent. */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const start = process.hrtime.bigint();
      res.on('finish', () => {
        const labels = { method: req.method, route: routeLabel(req), status: String(res.statusCode) };
        this.requests.inc(labels);
        this.latency.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
      });
      next();
    };
  }

  /** GET /v1/metrics: the Prometheus text exposition format (a handler for defineRoute or app.get). */
  handler(): (req: Request, res: Response) => Promise<void> {
    return async (_req, res) => {
      const body = await this.registry.metrics();
      res.setHeader('Content-Type', this.registry.contentType);
      res.send(body);
    };
  }

  /** Registers a gauge read on every scrape, e.g. module states: `{ name: 'module_state', labelNames: ['serial', 'state'], collect }`. */
  registerGauge<L extends string>(def: GaugeDefinition<L>): Gauge<L> {
    return new Gauge<L>({
      name: `${this.prefix}${def.name}`,
      help: def.help,
      labelNames: [...(def.labelNames ?? [])],
      registers: [this.registry],
      async collect() {
        const v = await def.collect();
        this.reset();
        if (typeof v === 'number') this.set(v);
        else for (const s of v) this.set(s.labels, s.value);
      },
    });
  }
}
