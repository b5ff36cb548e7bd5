// A worker thread of `eval dreambench --workers N` (dreambench-generate.ts): it loads its own
// pipeline, generates its share of the prompts, and reports each batch of saved images.
import { parentPort, workerData } from 'node:worker_threads';
import { type GenerationThreadEvent, type GenerationThreadInit, generatePending } from './dreambench-generate.js';

if (!parentPort) throw new Error('dreambench-generate-thread must be started as a worker thread');
const port = parentPort;
const post = (event: GenerationThreadEvent) => port.postMessage(event);
const { pending, out, settings, pass } = workerData as GenerationThreadInit;

try {
  await generatePending(pending, out, settings, pass, { started: () => post({ type: 'started' }), saved: (count) => post({ type: 'saved', count }) });
  post({ type: 'done' });
} catch (error) {
  post({ type: 'failed', message: error instanceof Error ? error.message : String(error) });
}
