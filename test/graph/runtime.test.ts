import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../src/graph/graph.js';
import { add, matmul, mul, softmax, tanh } from '../../src/graph/ops/elementwise.js';
import { probeWebGpu, resolveDevice } from '../../src/graph/devices.js';
import { Runtime, shapeSignature, shapesOf } from '../../src/graph/runtime.js';
import { GraphSession } from '../../src/graph/session.js';
import { WorkerRuntime } from '../../src/graph/worker.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { encodeModel, type ModelMessage } from '../../src/onnx/proto.js';
import type { HostTensor } from '../../src/onnx/dtype.js';

const float32 = (shape: number[], fill: (i: number) => number): HostTensor<'float32'> => {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  data.forEach((_, i) => (data[i] = fill(i)));
  return { dtype: 'float32', shape, data };
};

/** y = 2x, with the input shape fixed at trace time. */
function doubling(shape: readonly number[]): ModelMessage {
  const graph = new Graph();
  const x = graph.input('x', 'float32', shape);
  return graph.toModel({ y: mul(x, 2) });
}

/** A small model whose outputs depend on every input element: softmax(tanh(x @ w) + b). */
function mixing(): ModelMessage {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [8, 16]);
  const w = graph.input('w', 'float32', [16, 12]);
  const b = graph.input('b', 'float32', [12]);
  return graph.toModel({ y: softmax(add(tanh(matmul(x, w)), b)), h: matmul(x, w) });
}

const mixingFeeds = (): Record<string, HostTensor> => ({
  x: float32([8, 16], (i) => Math.sin(i * 0.37)),
  w: float32([16, 12], (i) => Math.cos(i * 0.11) * 0.3),
  b: float32([12], (i) => i / 12 - 0.5),
});

/** A chain of 512² matmuls, 0.27 GFLOP each. */
function heavy(steps: number): ModelMessage {
  const graph = new Graph();
  const x = graph.input('x', 'float32', [512, 512]);
  const w = graph.constant(float32([512, 512], (i) => Math.sin(i) / 23), 'w');
  let y = x;
  for (let i = 0; i < steps; i++) y = tanh(matmul(y, w));
  return graph.toModel({ y });
}

const bytesOf = (tensor: HostTensor): Buffer => Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);

test('compile caches one session per shape signature and evicts the least recently used', async () => {
  const runtime = await Runtime.create({ threads: 1, maxSessions: 2 });
  try {
    let builds = 0;
    const compile = (shape: number[]) => runtime.compile('double', { x: shape }, () => (builds++, doubling(shape)));
    const two = await compile([2]);
    assert.equal(await compile([2]), two);
    assert.equal(builds, 1);
    const three = await compile([3]);
    assert.notEqual(three, two);
    assert.equal(builds, 2);
    assert.deepEqual((await two.run({ x: float32([2], (i) => i + 1) }))['y']!.data, Float32Array.of(2, 4));
    await compile([2]); // now [3] is the least recently used
    await compile([4]);
    assert.equal(builds, 3);
    await assert.rejects(three.run({ x: float32([3], () => 1) }), /released/);
    assert.equal(await compile([2]), two);
    const stats = runtime.stats;
    assert.deepEqual({ hits: stats.hits, misses: stats.misses, evictions: stats.evictions, sessions: stats.sessions }, { hits: 3, misses: 3, evictions: 1, sessions: 2 });
    assert.equal(stats.last?.key, 'double');
    assert.equal(stats.last?.signature, 'x:4');
    assert.ok(stats.last!.modelBytes > 0 && stats.last!.buildMs >= 0 && stats.last!.createMs > 0);
    assert.ok(stats.createMs >= stats.last!.createMs);
  } finally {
    await runtime.dispose();
  }
});

test('release frees one key at every shape and leaves the others; the key compiles again afterwards', async () => {
  const runtime = await Runtime.create({ threads: 1 });
  try {
    const compile = (key: string, shape: number[]) => runtime.compile(key, { x: shape }, () => doubling(shape));
    const [two, three, prefixed, other] = [await compile('double', [2]), await compile('double', [3]), await compile('double|x', [2]), await compile('other', [2])];
    await runtime.release('double');
    assert.equal(runtime.stats.sessions, 2);
    await assert.rejects(two.run({ x: float32([2], () => 1) }), /released/);
    await assert.rejects(three.run({ x: float32([3], () => 1) }), /released/);
    // A key that merely starts like the released one keeps its session.
    for (const kept of [prefixed, other]) assert.deepEqual((await kept.run({ x: float32([2], () => 1) }))['y']!.data, Float32Array.of(2, 2));
    const again = await compile('double', [2]);
    assert.notEqual(again, two);
    assert.deepEqual((await again.run({ x: float32([2], () => 3) }))['y']!.data, Float32Array.of(6, 6));
    await runtime.release('absent');
    assert.equal(runtime.stats.sessions, 3);
  } finally {
    await runtime.dispose();
  }
});

test('concurrent compiles share one build, a failed build is not cached, keepOnDevice is part of the key', async () => {
  const runtime = await Runtime.create({ threads: 1 });
  try {
    let builds = 0;
    const build = () => (builds++, encodeModel(doubling([5])));
    const [a, b] = await Promise.all([runtime.compile('double', { x: [5] }, build), runtime.compile('double', { x: [5] }, build)]);
    assert.equal(a, b);
    assert.equal(builds, 1);
    await assert.rejects(runtime.compile('broken', { x: [1] }, () => { throw new Error('trace failed'); }), /trace failed/);
    await runtime.compile('broken', { x: [1] }, () => doubling([1]));
    assert.equal(runtime.stats.sessions, 2);
    // On the CPU host memory is the device: the kept output comes back as a host tensor.
    const kept = await runtime.compile('double', { x: [5] }, build, { keepOnDevice: ['y'] });
    assert.notEqual(kept, a);
    assert.deepEqual(kept.deviceOutputs.size, 0);
    assert.deepEqual((await kept.runOnDevice({ x: float32([5], () => 1) }))['y'], float32([5], () => 2));
    await assert.rejects(runtime.compile('double', { x: [5] }, build, { keepOnDevice: ['z'] }), /keepOnDevice names z, which is not an output/);
    assert.equal(shapeSignature({ b: [2, 3], a: [1] }), shapeSignature(shapesOf({ a: float32([1], () => 0), b: float32([2, 3], () => 0) })));
    const host = float32([1], () => 7);
    assert.equal(await runtime.download(host), host);
    assert.deepEqual(await runtime.downloadAll({ host }), { host });
  } finally {
    await runtime.dispose();
  }
  await assert.rejects(runtime.compile('double', { x: [5] }, () => doubling([5])), /disposed/);
});

test('device resolution: cpu, auto by probe, webgpu only with an adapter, and fast', async () => {
  assert.equal(await resolveDevice('cpu'), 'cpu');
  const probe = await probeWebGpu();
  assert.ok(probe.ms < 5000, `probe took ${probe.ms} ms`);
  assert.equal(await resolveDevice('auto'), probe.available ? 'webgpu' : 'cpu');
  const start = performance.now();
  if (probe.available) assert.equal(await resolveDevice('webgpu'), 'webgpu');
  else await assert.rejects(resolveDevice('webgpu'), /device 'webgpu' was requested but no WebGPU adapter was found/);
  assert.ok(performance.now() - start < 100, 'a second resolution reuses the cached probe');
  await assert.rejects(resolveDevice('cuda' as never), /unknown device "cuda"/);
  if (!probe.available) await assert.rejects(Runtime.create({ device: 'webgpu' }), /no WebGPU adapter was found/);
});

test('threads default to the core count and reach the session as intra-op threads', async () => {
  const fallback = await Runtime.create();
  assert.equal(fallback.threads, availableParallelism());
  await fallback.dispose();
  const runtime = await Runtime.create({ threads: 1 });
  const session = await runtime.compile('double', { x: [2] }, () => doubling([2]));
  assert.equal(session.sessionOptions.intraOpNumThreads, 1);
  assert.deepEqual(session.sessionOptions.executionProviders, ['cpu']);
  await runtime.dispose();
  await assert.rejects(Runtime.create({ threads: 0 }), /threads must be a positive integer, got 0/);
  await assert.rejects(Runtime.create({ threads: 1.5 }), /threads must be a positive integer/);
});

test('a worker run is bit-identical to an in-process run; inputs move unless copied', async () => {
  const local = await Runtime.create({ threads: 2 });
  const remote = await WorkerRuntime.create({ threads: 2 });
  try {
    assert.equal(remote.device, 'cpu');
    const expected = await (await local.compile('mixing', {}, mixing)).run(mixingFeeds());
    const session = await remote.compile('mixing', {}, () => encodeModel(mixing()));
    assert.equal(await remote.compile('mixing', {}, mixing), session);
    assert.deepEqual([...session.inputNames].sort(), ['b', 'w', 'x']);
    const copied = mixingFeeds();
    const actual = await session.run(copied, { copyInputs: true });
    assert.equal(copied['x']!.data.length, 8 * 16);
    for (const name of ['y', 'h']) {
      assert.deepEqual(actual[name]!.shape, expected[name]!.shape);
      assert.equal(bytesOf(actual[name]!).compare(bytesOf(expected[name]!)), 0, name);
    }
    const moved = mixingFeeds();
    const again = await session.run(moved);
    assert.equal(moved['x']!.data.byteLength, 0, 'the input buffer was transferred to the worker');
    assert.equal(bytesOf(again['y']!).compare(bytesOf(expected['y']!)), 0);
    assert.deepEqual({ hits: remote.stats.hits, misses: remote.stats.misses }, { hits: 1, misses: 1 });
    assert.ok(remote.stats.last!.createMs > 0);
  } finally {
    await local.dispose();
    await remote.close();
  }
});

test('the event loop keeps ticking while a worker runs a heavy graph', async () => {
  const steps = 250;
  const gapLimit = 50;
  const feeds = () => ({ x: float32([512, 512], (i) => Math.cos(i) / 4) });
  const measure = async (run: () => Promise<unknown>) => {
    let last = performance.now();
    let maxGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 5);
    const start = performance.now();
    await run();
    const duration = performance.now() - start;
    clearInterval(timer);
    return { duration, maxGap: Math.max(maxGap, performance.now() - last), ticks };
  };
  const local = await Runtime.create({ threads: 1 });
  const remote = await WorkerRuntime.create({ threads: 1 });
  try {
    const inProcess = await local.compile('heavy', {}, () => heavy(steps));
    const inWorker = await remote.compile('heavy', {}, () => heavy(steps));
    await inWorker.run(feeds());
    // In process, run() holds the thread: this shows the measurement can tell the difference.
    const blocked = await measure(() => inProcess.run(feeds()));
    assert.ok(blocked.duration > 3 * gapLimit, `the heavy graph ran only ${blocked.duration} ms`);
    assert.ok(blocked.maxGap > 0.8 * blocked.duration, `in-process max gap ${blocked.maxGap} ms of ${blocked.duration} ms`);
    const free = await measure(() => inWorker.run(feeds()));
    // Relative to the run's length, so that a loaded machine (other test files, other processes)
    // delaying one timer tick does not read as a blocked event loop.
    assert.ok(free.maxGap < Math.max(gapLimit, 0.35 * free.duration), `worker max gap ${free.maxGap} ms over ${free.duration} ms`);
    assert.ok(free.ticks >= free.duration / 20, `${free.ticks} ticks in ${free.duration} ms`);
  } finally {
    await local.dispose();
    await remote.close();
  }
});

test('errors in the worker reject with the original message', async () => {
  const local = await Runtime.create({ threads: 1 });
  const remote = await WorkerRuntime.create({ threads: 1 });
  try {
    const wrongShape = { x: float32([3], () => 1) };
    const localError = await (await local.compile('double', { x: [2] }, () => doubling([2]))).run(wrongShape).catch((error: Error) => error);
    const remoteSession = await remote.compile('double', { x: [2] }, () => doubling([2]));
    const remoteError = await remoteSession.run(wrongShape).catch((error: Error) => error);
    assert.ok(localError instanceof Error && remoteError instanceof Error);
    assert.match(remoteError.message, /dimensions/);
    assert.equal(remoteError.message, localError.message);
    assert.match(remoteError.stack ?? '', /in the worker thread/);
    await assert.rejects(remoteSession.run({}), /missing input x/);
    const garbage = Uint8Array.of(1, 2, 3, 4, 5);
    const localCreate = await GraphSession.create(garbage.slice()).catch((error: Error) => error);
    await assert.rejects(remote.compile('garbage', {}, () => garbage), (error: Error) => error.message === (localCreate as Error).message);
    // The worker survives its errors.
    assert.deepEqual((await remoteSession.run({ x: float32([2], () => 3) }))['y']!.data, Float32Array.of(6, 6));
    if (!(await probeWebGpu()).available) await assert.rejects(WorkerRuntime.create({ device: 'webgpu' }), /no WebGPU adapter was found/);
  } finally {
    await local.dispose();
    await remote.close();
  }
  await assert.rejects(remote.compile('double', { x: [7] }, () => doubling([7])), /closed/);
});

test('a close() in flight rejects the pending run', async () => {
  const remote = await WorkerRuntime.create({ threads: 1 });
  const session = await remote.compile('heavy', {}, () => heavy(40));
  const rejected = assert.rejects(session.run({ x: float32([512, 512], () => 0.1) }), /closed/);
  await remote.close();
  await rejected;
  await assert.rejects(session.run({ x: float32([512, 512], () => 0.1) }), /released|closed/);
});

test('an initializer stored in a safetensors file runs from disk and from memory, in process and in a worker', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'kosmos-g-runtime-'));
  const local = await Runtime.create({ threads: 1 });
  const remote = await WorkerRuntime.create({ threads: 1 });
  try {
    // 'a' sorts first, so 'w' starts at an odd, unaligned offset inside the data block.
    const weight = float32([2, 3], (i) => i * 1.5 - 2);
    await writeSafetensors(join(directory, 'weights.safetensors'), { a: { dtype: 'uint8', shape: [3], data: Uint8Array.of(9, 9, 9) }, w: weight });
    const file = await readFile(join(directory, 'weights.safetensors'));
    const headerLength = Number(file.readBigUInt64LE(0));
    const header = JSON.parse(file.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
    const [begin, end] = header['w']!.data_offsets;
    assert.equal(begin % 2, 1);
    const build = () => {
      const graph = new Graph();
      const x = graph.input('x', 'float32', [2, 3]);
      const w = graph.externalInitializer('w', 'float32', [2, 3], { location: 'weights.safetensors', offset: 8 + headerLength + begin, length: end - begin });
      return graph.toModel({ y: add(x, w) });
    };
    const x = float32([2, 3], (i) => 10 * i);
    const expected = float32([2, 3], (i) => 10 * i + weight.data[i]!);
    const variants = {
      directory: { externalDataDirectory: directory },
      memory: { externalData: [{ path: 'weights.safetensors', data: new Uint8Array(file) }] },
      path: { externalData: [{ path: 'weights.safetensors', data: join(directory, 'weights.safetensors') }] },
    };
    for (const [name, options] of Object.entries(variants)) {
      const inProcess = await local.compile(`external-${name}`, {}, build, options);
      assert.deepEqual((await inProcess.run({ x }))['y'], expected, `in process, ${name}`);
      const inWorker = await remote.compile(`external-${name}`, {}, build, options);
      assert.deepEqual((await inWorker.run({ x }, { copyInputs: true }))['y'], expected, `in a worker, ${name}`);
    }
    await assert.rejects(local.compile('external-missing', {}, build), /external|weights\.safetensors/i);
  } finally {
    await local.dispose();
    await remote.close();
    await rm(directory, { recursive: true, force: true });
  }
});

test('outputs can be written into given host tensors, which come back filled; the others are fresh', async () => {
  const graph = new Graph('into');
  const x = graph.input('x', 'float32', [4]);
  const session = await GraphSession.create(encodeModel(graph.toModel({ doubled: mul(x, 2), shifted: add(x, 1) })));
  try {
    const data = new Float32Array(4);
    const target: HostTensor = { dtype: 'float32', shape: [4], data };
    const results = await session.runOnDevice({ x: { dtype: 'float32', shape: [4], data: Float32Array.of(1, 2, 3, 4) } }, { doubled: target });
    assert.equal(results['doubled'], target);
    assert.deepEqual(Array.from(data), [2, 4, 6, 8]);
    assert.deepEqual(Array.from((results['shifted'] as HostTensor).data as Float32Array), [2, 3, 4, 5]);
  } finally {
    await session.release();
  }
});

test('profilePrefix: the released session leaves a trace with one model_run per run and its kernels', async () => {
  const graph = new Graph('profiled');
  const x = graph.input('x', 'float32', [4, 4]);
  const model = encodeModel(graph.toModel({ y: tanh(matmul(x, x)) }));
  const directory = await mkdtemp(join(tmpdir(), 'profile-'));
  try {
    const session = await GraphSession.create(model, { profilePrefix: join(directory, 'trace') });
    for (let run = 0; run < 3; run++) await session.run({ x: { dtype: 'float32', shape: [4, 4], data: new Float32Array(16).fill(0.5) } });
    await session.release();
    const [file] = await readdir(directory);
    assert.match(file!, /^trace_.*\.json$/);
    const events = JSON.parse(await readFile(join(directory, file!), 'utf8')) as { cat?: string; name: string; args?: { op_name?: string } }[];
    assert.equal(events.filter((event) => event.cat === 'Session' && event.name === 'model_run').length, 3);
    const ops = new Set(events.filter((event) => event.cat === 'Node').map((event) => event.args?.op_name));
    assert.ok(ops.has('MatMul') && ops.has('Tanh'), [...ops].join(', '));
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
