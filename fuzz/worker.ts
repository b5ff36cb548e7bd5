// The worker process: runs the cases its parent sends, one at a time, and answers each with a
// verdict. It checks its own peak resident memory after every case (the parent also watches it
// from outside and enforces the time cap, since a hung case cannot answer). After a memory
// finding, or an exception outside any case's promise, it exits: its state can no longer be
// trusted, and the parent starts a fresh one.
//   argv: scratch folder, memory cap in bytes
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { targetNamed } from './targets/index.js';
import { type Verdict, judgeThrown } from './verdict.js';

export interface CaseRequest {
  id: number;
  target: string;
  variant: string;
  input: Uint8Array;
}

export interface CaseReply {
  id: number;
  verdict: Verdict;
  elapsedMs: number;
}

const [scratchRoot, memoryCapArgument] = process.argv.slice(2) as [string, string];
const memoryCap = Number(memoryCapArgument);

// One libvips thread and no operation cache: the fuzzer shares busy cores, and a cache would make
// the worker's memory depend on the cases before.
sharp.concurrency(1);
sharp.cache(false);

let current: CaseRequest | null = null;

function send(reply: CaseReply, then?: () => void): void {
  process.send!(reply, undefined, {}, () => then?.());
}

function failOutside(error: unknown): void {
  const described = error instanceof Error ? { message: error.message, stack: error.stack ?? '', errorClass: error.constructor.name } : { message: String(error), errorClass: typeof error };
  send({ id: current?.id ?? -1, verdict: { outcome: 'finding', kind: 'uncaught', ...described }, elapsedMs: 0 }, () => process.exit(70));
}

process.on('uncaughtException', failOutside);
process.on('unhandledRejection', failOutside);

process.on('message', (request: CaseRequest) => {
  current = request;
  void (async () => {
    const started = performance.now();
    let verdict: Verdict;
    try {
      const scratch = join(scratchRoot, request.target, request.variant);
      await mkdir(scratch, { recursive: true });
      await targetNamed(request.target).run(request.variant, request.input, scratch);
      verdict = { outcome: 'accepted' };
    } catch (error) {
      verdict = judgeThrown(error);
    }
    const peak = process.resourceUsage().maxRSS * 1024;
    const overCap = peak > memoryCap;
    if (overCap) verdict = { outcome: 'finding', kind: 'memory', message: `peak resident memory ${Math.round(peak / 2 ** 20)} MiB, over the ${Math.round(memoryCap / 2 ** 20)} MiB cap` };
    send({ id: request.id, verdict, elapsedMs: performance.now() - started }, overCap ? () => process.exit(71) : undefined);
  })();
});

process.send!({ ready: true });
