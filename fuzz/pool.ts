// The parent's side of the workers: at most two child processes, each running one case at a time
// under a time cap (the parent kills a worker whose case runs past it) and a memory cap (V8's heap
// limit inside the worker, its own peak-memory check after each case, and, on Linux, the parent
// reading the worker's resident set while the case runs). A worker that dies, hangs or runs out of
// memory is replaced by a fresh one for the next case.
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Verdict } from './verdict.js';
import type { CaseReply, CaseRequest } from './worker.js';

export interface Limits {
  /** Time cap per case. */
  timeMs: number;
  /** Resident memory cap of a worker. */
  memoryMb: number;
}

export interface CaseResult {
  verdict: Verdict;
  elapsedMs: number;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
/** How often the parent reads a running worker's resident memory. */
const MEMORY_POLL_MS = 50;
/** Longest a worker may take to start (imports, sharp) before it counts as a crash. */
const START_TIMEOUT_MS = 60_000;

/** Resident memory of a process from /proc (Linux); null where that is not available. */
function residentBytes(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

class Worker {
  private readonly child: ChildProcess;
  private readonly started: Promise<void>;
  private stderr = '';
  private reply: ((reply: CaseReply) => void) | null = null;
  private exited: ((description: string) => void) | null = null;
  alive = true;

  constructor(scratch: string, private readonly limits: Limits) {
    // V8's heap limit is half the cap, so that a heap that grows is stopped (and reported) before
    // the resident set as a whole reaches the cap.
    this.child = fork(WORKER, [scratch, String(limits.memoryMb * 2 ** 20)], {
      execArgv: [`--max-old-space-size=${Math.max(64, Math.floor(limits.memoryMb / 2))}`],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4000);
    });
    this.started = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`a fuzz worker did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      this.child.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`a fuzz worker exited while starting (${signal ?? `code ${code}`}): ${this.stderr.trim()}`));
      });
    });
    this.child.on('message', (message: CaseReply | { ready: true }) => {
      if ('id' in message) this.reply?.(message);
    });
    // 'close' rather than 'exit': it comes after stderr has been read to its end (a crash's last words).
    this.child.on('close', (code, signal) => {
      this.alive = false;
      this.exited?.(signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
  }

  async run(request: CaseRequest): Promise<CaseResult> {
    await this.started;
    const startedAt = performance.now();
    return new Promise<CaseResult>((resolve) => {
      let settled = false;
      const finish = (result: CaseResult, kill: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearInterval(poll);
        this.reply = null;
        this.exited = null;
        if (kill) this.kill();
        resolve(result);
      };
      const elapsed = () => performance.now() - startedAt;
      const timer = setTimeout(() => {
        finish({ verdict: { outcome: 'finding', kind: 'hang', message: `still running after the ${this.limits.timeMs} ms time cap` }, elapsedMs: elapsed() }, true);
      }, this.limits.timeMs);
      const poll = setInterval(() => {
        const resident = residentBytes(this.child.pid!);
        if (resident !== null && resident > this.limits.memoryMb * 2 ** 20) {
          const message = `resident memory ${Math.round(resident / 2 ** 20)} MiB, over the ${this.limits.memoryMb} MiB cap`;
          finish({ verdict: { outcome: 'finding', kind: 'memory', message }, elapsedMs: elapsed() }, true);
        }
      }, MEMORY_POLL_MS);
      this.reply = (reply) => {
        // After a memory or uncaught-exception finding the worker exits on its own; it is not reused.
        const exiting = reply.verdict.outcome === 'finding' && (reply.verdict.kind === 'memory' || reply.verdict.kind === 'uncaught');
        if (reply.id === request.id) finish({ verdict: reply.verdict, elapsedMs: reply.elapsedMs }, exiting);
      };
      this.exited = (description) => {
        // V8 aborts when the heap limit is reached: that is memory, not a crash.
        const outOfHeap = /heap out of memory|Reached heap limit/i.test(this.stderr);
        const tail = this.stderr.trim().split('\n').slice(-6).join(' | ');
        finish({ verdict: { outcome: 'finding', kind: outOfHeap ? 'memory' : 'crash', message: `the worker ${description}${tail ? `: ${tail}` : ''}` }, elapsedMs: elapsed() }, false);
      };
      this.child.send(request);
    });
  }

  kill(): void {
    if (!this.alive) return;
    this.alive = false;
    this.child.kill('SIGKILL');
  }
}

export class WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly waiting: ((worker: Worker | null) => void)[] = [];
  private scratch: Promise<string> = mkdtemp(join(tmpdir(), 'kosmos-g-fuzz-'));
  private spawned = 0;
  private live = 0;
  private nextId = 0;

  constructor(
    private readonly size: number,
    private readonly limits: Limits,
  ) {}

  /** Runs one case on a free worker (started when needed) and gives the worker back when it survived. */
  async run(target: string, variant: string, input: Uint8Array): Promise<CaseResult> {
    const worker = await this.acquire();
    try {
      return await worker.run({ id: this.nextId++, target, variant, input });
    } finally {
      this.release(worker);
    }
  }

  private async acquire(): Promise<Worker> {
    const free = this.idle.pop();
    if (free) return free;
    if (this.live < this.size) {
      this.live++;
      return new Worker(join(await this.scratch, `worker-${this.spawned++}`), this.limits);
    }
    const worker = await new Promise<Worker | null>((resolve) => this.waiting.push(resolve));
    return worker ?? this.acquire();
  }

  private release(worker: Worker): void {
    if (!worker.alive) this.live--;
    const next = this.waiting.shift();
    if (next) next(worker.alive ? worker : null);
    else if (worker.alive) this.idle.push(worker);
  }

  async close(): Promise<void> {
    for (const worker of this.idle.splice(0)) worker.kill();
    await rm(await this.scratch, { recursive: true, force: true });
  }
}
