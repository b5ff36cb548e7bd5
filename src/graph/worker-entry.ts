// The worker thread behind WorkerRuntime: holds the compiled sessions by id and answers requests.
// Runs are serialised by this thread's event loop, which onnxruntime-node blocks while it computes.
import { parentPort } from 'node:worker_threads';
import type { HostTensor } from '../onnx/dtype.js';
import { type ResolvedDevice, resolveDevice } from './devices.js';
import { GraphSession, type SessionOptions } from './session.js';
import {
  type CreateReply,
  type InitReply,
  type SerializedError,
  type WorkerCommand,
  type WorkerRequest,
  transferList,
} from './worker.js';

if (!parentPort) throw new Error('worker-entry must be started as a worker thread by WorkerRuntime');
const port = parentPort;

interface Config {
  device: ResolvedDevice;
  threads: number;
  optimizationLevel: SessionOptions['optimizationLevel'];
}

let config: Config | undefined;
const sessions = new Map<number, GraphSession>();
const inFlight = new Set<Promise<void>>();

function sessionById(id: number): GraphSession {
  const session = sessions.get(id);
  if (!session) throw new Error(`no session ${id} in the worker`);
  return session;
}

async function execute(command: Exclude<WorkerCommand, { type: 'close' }>): Promise<[unknown, ArrayBuffer[]]> {
  switch (command.type) {
    case 'init': {
      const device = await resolveDevice(command.device);
      config = { device, threads: command.threads, optimizationLevel: command.optimizationLevel };
      return [{ device } satisfies InitReply, []];
    }
    case 'create': {
      if (!config) throw new Error('the worker was not initialised');
      const start = performance.now();
      const session = await GraphSession.create(command.model, {
        executionProvider: config.device,
        threads: config.threads,
        optimizationLevel: config.optimizationLevel,
        ...command.options,
      });
      sessions.set(command.session, session);
      const reply: CreateReply = { inputNames: [...session.inputNames], outputNames: [...session.outputNames], createMs: performance.now() - start };
      return [reply, []];
    }
    case 'run': {
      const outputs: Record<string, HostTensor> = await sessionById(command.session).run(command.feeds);
      return [outputs, transferList(Object.values(outputs).map((tensor) => tensor.data))];
    }
    case 'release': {
      const session = sessionById(command.session);
      sessions.delete(command.session);
      await session.release();
      return [null, []];
    }
  }
}

/** Ends the thread from inside, after the native work in flight, so no run outlives its JavaScript environment. */
async function close(): Promise<void> {
  await Promise.allSettled(inFlight);
  await Promise.allSettled([...sessions.values()].map((session) => session.release()));
  process.exit(0);
}

function serialize(error: unknown): SerializedError {
  if (error instanceof Error) return { name: error.name, message: error.message, stack: error.stack ?? '' };
  return { name: 'Error', message: String(error), stack: '' };
}

async function answer(id: number, command: Exclude<WorkerCommand, { type: 'close' }>): Promise<void> {
  try {
    const [value, transfer] = await execute(command);
    port.postMessage({ id, value }, transfer);
  } catch (error) {
    // Also reached when a reply cannot be posted: the caller still gets an answer.
    port.postMessage({ id, error: serialize(error) });
  }
}

port.on('message', ({ id, command }: WorkerRequest) => {
  if (command.type === 'close') {
    void close();
    return;
  }
  const done = answer(id, command);
  inFlight.add(done);
  void done.finally(() => inFlight.delete(done));
});
