// `kosmos-g worker`: takes generation jobs from the Redis queue that `kosmos-g serve --redis` fills
// and runs them (src/server/queue-worker.ts, docs/deploy.md). Prints a line per job. SIGINT/SIGTERM:
// takes no more jobs, finishes the ones in hand, exits 0; a killed worker's job is taken by another.
import type { Command } from 'commander';
import { startQueueWorker } from '../server/queue-worker.js';
import { redactedUrl } from '../server/redis-jobs.js';
import { DTYPE_HELP, integer, quantizationOf } from './arguments.js';

interface WorkerFlags {
  redis?: string;
  model?: string;
  concurrency: string;
  threads?: string;
  dtype: string;
  device: string;
  lockDuration: string;
  stalledInterval: string;
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('run the generation jobs that `serve --redis` queues (see docs/deploy.md)')
    .showHelpAfterError(false)
    .option('--redis <url>', 'the queue\'s Redis, e.g. redis://:PASSWORD@10.0.0.5:6379 (default: $KOSMOS_G_REDIS_URL)')
    .option('--model <dir>', 'pipeline folder, the same model as the server\'s; default: the embedded kosmos-g-mini')
    .option('--concurrency <n>', 'jobs at once (one generation thread each)', '1')
    .option('--threads <n>', 'CPU threads of each generation (default: the cores shared between them)')
    .option('--device <device>', 'cpu, webgpu or auto', 'cpu')
    .option('--dtype <dtype>', DTYPE_HELP, 'float32')
    .option('--lock-duration <ms>', 'how long a job stays with a worker that stopped answering before another takes it', '30000')
    .option('--stalled-interval <ms>', 'how often this worker looks for such jobs', '30000')
    .action(async (flags: WorkerFlags) => {
      if (!['cpu', 'webgpu', 'auto'].includes(flags.device)) throw new Error(`unknown device '${flags.device}' (cpu, webgpu or auto)`);
      const redis = flags.redis ?? process.env.KOSMOS_G_REDIS_URL;
      if (!redis) throw new Error('worker needs --redis URL (or $KOSMOS_G_REDIS_URL): the Redis that `serve --redis` queues jobs in');
      const concurrency = integer(flags.concurrency, '--concurrency', 1, 64);
      const worker = await startQueueWorker({
        redis,
        model: flags.model,
        concurrency,
        threads: flags.threads === undefined ? undefined : integer(flags.threads, '--threads', 1),
        device: flags.device as 'cpu' | 'webgpu' | 'auto',
        quantize: quantizationOf(flags.dtype),
        lockDurationMs: integer(flags.lockDuration, '--lock-duration', 100),
        stalledIntervalMs: integer(flags.stalledInterval, '--stalled-interval', 100),
      });
      process.stdout.write(`kosmos-g worker taking jobs from ${redactedUrl(redis)} (${flags.model ?? 'kosmos-g-mini'}, ${concurrency} at once)\n`);
      const stop = (reason: string, code: number) => {
        process.stdout.write(`${reason}: finishing the jobs in hand, then exiting\n`);
        worker.close().then(
          () => process.exit(code),
          (error: unknown) => {
            process.stderr.write(`kosmos-g: ${(error as Error).message}\n`);
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', () => stop('SIGINT', 0));
      process.once('SIGTERM', () => stop('SIGTERM', 0));
      void worker.broken.then((error) => {
        process.stderr.write(`kosmos-g: ${error.message}; its job goes to another worker\n`);
        stop('generation thread lost', 1);
      });
    });
}
