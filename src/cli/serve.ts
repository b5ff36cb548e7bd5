// `kosmos-g serve`: the HTTP API and the web page (src/server/, docs/server.md). Stops cleanly on
// SIGINT/SIGTERM: running jobs finish, waiting ones are recorded as cancelled (with --redis, both
// stay with the workers, and the next start collects their results: docs/deploy.md).
import type { Command } from 'commander';
import { parseByteSize } from '../pipeline/memory.js';
import { redactedUrl } from '../server/redis-jobs.js';
import { startServer } from '../server/server.js';
import { DTYPE_HELP, integer, quantizationOf } from './arguments.js';

interface ServeFlags {
  model?: string;
  host: string;
  port: string;
  data: string;
  apiKey?: string;
  insecure?: boolean;
  allowedHost: string[];
  maxQueue: string;
  concurrency: string;
  rateLimit: string;
  maxResults: string;
  maxDataSize: string;
  maxAgeDays: string;
  lora: string[];
  controlnet: string[];
  device: string;
  threads?: string;
  dtype: string;
  maxMemory?: string;
  redis?: string;
  cache?: string;
}

/** `NAME=PATH` pairs of a repeatable flag. */
function assets(values: string[], flag: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const value of values) {
    const match = /^([^=]+)=(.+)$/.exec(value);
    if (!match) throw new Error(`${flag} takes NAME=PATH, got '${value}'`);
    if (match[1]! in map) throw new Error(`${flag} ${match[1]} is given twice`);
    map[match[1]!] = match[2]!;
  }
  return map;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve the HTTP API and the web page (see docs/server.md)')
    .showHelpAfterError(false)
    .option('--model <dir>', 'pipeline folder; default: the embedded kosmos-g-mini')
    .option('--host <address>', 'address to bind; anything but loopback needs --api-key or --insecure', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', '7860')
    .option('--data <dir>', 'results folder', 'kosmos-g-data')
    .option('--api-key <key>', 'require Authorization: Bearer KEY on the API (default: $KOSMOS_G_API_KEY)')
    .option('--insecure', 'allow a non-loopback --host without an API key')
    .option('--allowed-host <name>', 'another Host header value to accept, e.g. a proxy\'s name (repeatable)', collect, [] as string[])
    .option('--max-queue <n>', 'jobs waiting at once; more are refused with 429', '32')
    .option('--concurrency <n>', 'generations at once (one worker thread each)', '1')
    .option('--rate-limit <n>', 'submissions per minute per client address', '120')
    .option('--max-results <n>', 'finished jobs kept in --data (oldest deleted first)', '1000')
    .option('--max-data-size <bytes>', 'bytes of results kept in --data, e.g. 2G', '2G')
    .option('--max-age-days <n>', 'finished jobs older than this are deleted', '30')
    .option('--lora <name=file>', 'a LoRA that requests may name (repeatable)', collect, [] as string[])
    .option('--controlnet <name=dir>', 'a ControlNet that requests may name (repeatable)', collect, [] as string[])
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--threads <n>', 'CPU threads of each generation (default: the cores shared between them)')
    .option('--dtype <dtype>', DTYPE_HELP, 'float32')
    .option('--max-memory <bytes>', 'refuse a request whose estimated peak memory is over this, e.g. 4G (default: half of this machine\'s memory)')
    .option('--cache <dir>', 'sprite cache of layout maps (default $KOSMOS_G_CACHE or ~/.cache/kosmos-g)')
    .option('--redis <url>', 'queue jobs in Redis for `kosmos-g worker` processes instead of running them here, e.g. redis://:PASSWORD@10.0.0.5:6379 (default: $KOSMOS_G_REDIS_URL; docs/deploy.md)')
    .action(async (flags: ServeFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device '${flags.device}' (cpu, webgpu or auto)`);
      const redis = flags.redis ?? (process.env.KOSMOS_G_REDIS_URL || undefined);
      const server = await startServer({
        model: flags.model,
        data: flags.data,
        host: flags.host,
        port: integer(flags.port, '--port', 0, 65535),
        apiKey: flags.apiKey ?? (process.env.KOSMOS_G_API_KEY || undefined),
        insecure: flags.insecure,
        allowedHosts: flags.allowedHost,
        maxQueue: integer(flags.maxQueue, '--max-queue', 1),
        concurrency: integer(flags.concurrency, '--concurrency', 1, 64),
        rateLimit: integer(flags.rateLimit, '--rate-limit', 1),
        maxResults: integer(flags.maxResults, '--max-results', 1),
        maxBytes: parseByteSize(flags.maxDataSize, '--max-data-size'),
        maxAgeDays: integer(flags.maxAgeDays, '--max-age-days', 1),
        loras: assets(flags.lora, '--lora'),
        controlnets: assets(flags.controlnet, '--controlnet'),
        device: flags.device as 'cpu' | 'webgpu' | 'auto',
        threads: flags.threads === undefined ? undefined : integer(flags.threads, '--threads', 1),
        quantize: quantizationOf(flags.dtype),
        maxMemory: flags.maxMemory === undefined ? undefined : parseByteSize(flags.maxMemory, '--max-memory'),
        redis,
        cache: flags.cache,
      });
      const queue = redis === undefined ? '' : `, jobs queued at ${redactedUrl(redis)}`;
      process.stdout.write(`kosmos-g serving ${flags.model ?? 'kosmos-g-mini'} at ${server.url}/ (results in ${flags.data}${queue})\n`);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write(redis === undefined ? `${signal}: finishing the running jobs; waiting ones are recorded as cancelled\n` : `${signal}: stopping; queued jobs stay in Redis for the workers\n`);
        server.close().then(
          () => process.exit(0),
          (error: unknown) => {
            process.stderr.write(`kosmos-g: ${(error as Error).message}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
