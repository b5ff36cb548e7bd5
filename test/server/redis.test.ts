// `serve --redis` with `kosmos-g worker` child processes over a real redis-server (Debian's,
// started here on a free loopback port with a password): workers share the jobs and each is done
// once; a killed worker's job is done by another; a late worker drains the queue; a restarted
// server collects what finished while it was down; cancels; SIGTERM; the server reads the model's
// limits without loading it; bad flags are one-line errors that never print the password.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readPipelineFolder } from '../../src/pipeline/folder.js';
import { readPngText } from '../../src/pipeline/image_output.js';
import { GenerationWorker } from '../../src/server/generation-worker.js';
import { readModelInfo } from '../../src/server/model-info.js';
import type { RunningServer } from '../../src/server/server.js';
import { assertOneLineError, runCli } from '../cli/run-cli.js';
import { scratch, tinyPipeline } from '../pipeline/tiny.js';
import { REDIS_SERVER, type RedisProcess, type WorkerProcess, hasRedisServer, jobsInRedis, startRedis, startWorker, stopWorker } from './redis-helpers.js';
import { postJson, tinyServer, waitFinished } from './server-helpers.js';

type Json = Record<string, unknown>;
const PASSWORD = 'test-password-7f3a';
/** Short enough that a killed worker's job is taken again within seconds. */
const FAST_RECOVERY = ['--lock-duration', '2000', '--stalled-interval', '1000'];
/** About 4 s of sampling on the tiny pipeline: long enough to act on while it runs. */
const LONG_JOB = { prompt: 'a long one', steps: 150, width: 256, height: 256 };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function submit(server: RunningServer, body: Json): Promise<string> {
  const response = await postJson(server, body);
  assert.equal(response.status, 202, await response.clone().text());
  return ((await response.json()) as { id: string }).id;
}

async function status(server: RunningServer, id: string): Promise<Json> {
  return (await (await fetch(`${server.url}/v1/generations/${id}`)).json()) as Json;
}

/** Waits until the job has taken `steps` steps on some worker. */
async function untilStep(server: RunningServer, id: string, steps: number): Promise<void> {
  while (((await status(server, id)).step as number) < steps) await sleep(20);
}

/** Lines of all workers about the job, e.g. `done`. */
const linesAbout = (workers: WorkerProcess[], id: string, what: string) => workers.flatMap((worker) => worker.lines.filter((line) => line.startsWith(`job ${id}: ${what}`)));

/** The files of results in --data: exactly one PNG and one sidecar per image of each done job. */
async function assertResultsOnce(data: string, ids: string[]): Promise<void> {
  const files = (await readdir(join(data, 'images'))).sort();
  assert.deepEqual(files, ids.flatMap((id) => [`${id}-0.json`, `${id}-0.png`]).sort());
}

describe('serve --redis with kosmos-g worker processes', { skip: hasRedisServer() ? false : `${REDIS_SERVER} is not installed (Debian: apt-get install redis-server)` }, () => {
  let redis: RedisProcess;
  let model: string;
  let database = 0;
  /** Each test has a Redis database of its own. */
  const freshUrl = () => `${redis.url}/${++database}`;

  before(async () => {
    [redis, model] = await Promise.all([startRedis(PASSWORD), tinyPipeline()]);
  });
  after(() => redis?.stop());

  test('two workers share a stream of jobs; each is done exactly once and leaves Redis once stored', async () => {
    const url = freshUrl();
    const server = await tinyServer({ redis: url });
    const workers = await Promise.all([startWorker(url, model), startWorker(url, model)]);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 8; i++) ids.push(await submit(server, { prompt: `job ${i}`, steps: 12, width: 128, height: 128, seed: i }));
      for (const id of ids) assert.equal((await waitFinished(server, id)).state, 'done');
      for (const id of ids) assert.equal(linesAbout(workers, id, 'done').length, 1, id);
      assert.ok(workers.every((worker) => worker.lines.some((line) => / done in /.test(line))), 'both workers took jobs');
      await assertResultsOnce(server.data, ids);
      const png = await readFile(join(server.data, 'images', `${ids[3]}-0.png`));
      assert.match(readPngText(png).parameters!, /^job 3\nSteps: 12, .*Seed: 3, Size: 128x128/);
      const first = await status(server, ids[0]!);
      assert.equal(first.step, 12);
      assert.ok(((first.timings as Json).generateMs as number) > 0);
    } finally {
      await server.close();
      await Promise.all(workers.map(stopWorker));
    }
    assert.equal(await jobsInRedis(url), 0);
  });

  test('a worker killed in the middle of a job: another takes it, and it is done once', async () => {
    const url = freshUrl();
    const server = await tinyServer({ redis: url });
    const workers = await Promise.all([startWorker(url, model, FAST_RECOVERY), startWorker(url, model, FAST_RECOVERY)]);
    try {
      const id = await submit(server, { ...LONG_JOB, seed: 7 });
      const holder = await Promise.race(workers.map(async (worker) => (await worker.waitFor(new RegExp(`^job ${id}: started`)), worker)));
      await untilStep(server, id, 3);
      holder.child.kill('SIGKILL');
      const other = workers.find((worker) => worker !== holder)!;
      const final = await waitFinished(server, id);
      assert.equal(final.state, 'done', JSON.stringify(final.error));
      assert.equal(final.step, 150);
      assert.match(await other.waitFor(new RegExp(`^job ${id}: started`)), /\(try 2\)$/);
      assert.equal(linesAbout(workers, id, 'done').length, 1);
      assert.ok(!holder.lines.some((line) => line.startsWith(`job ${id}: done`)));
      await assertResultsOnce(server.data, [id]);
    } finally {
      await server.close();
      await Promise.all(workers.map(stopWorker));
    }
  });

  test('jobs queued with no worker wait in order, a full queue answers 429, and a worker started later drains them', async () => {
    const url = freshUrl();
    const server = await tinyServer({ redis: url, maxQueue: 3 });
    let worker: WorkerProcess | undefined;
    try {
      const answers: Json[] = [];
      for (let i = 0; i < 3; i++) answers.push((await (await postJson(server, { prompt: `waits ${i}`, steps: 3 })).json()) as Json);
      assert.deepEqual(answers.map((answer) => answer.queuePosition), [0, 1, 2]);
      const refused = await postJson(server, { prompt: 'one too many', steps: 3 });
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      const last = await status(server, answers[2]!.id as string);
      assert.deepEqual([last.state, last.queuePosition], ['queued', 2]);
      assert.equal(((await (await fetch(`${server.url}/healthz`)).json()) as Json).queued, 3);
      assert.equal(await jobsInRedis(url), 3);
      worker = await startWorker(url, model);
      for (const answer of answers) assert.equal((await waitFinished(server, answer.id as string)).state, 'done');
      // The queue has room again.
      assert.equal((await postJson(server, { prompt: 'room again', steps: 1 })).status, 202);
    } finally {
      await server.close();
      if (worker) await stopWorker(worker);
    }
  });

  test('a server restarted while the workers run keeps every result, those finished while it was down included', async () => {
    const url = freshUrl();
    const data = await mkdtemp(join(scratch, 'serve-redis-'));
    const first = await tinyServer({ redis: url, data });
    const worker = await startWorker(url, model);
    let second: RunningServer | undefined;
    try {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push(await submit(first, { prompt: `kept ${i}`, steps: 40, width: 128, height: 128, seed: i }));
      await untilStep(first, ids[0]!, 1);
      await first.close();
      // Every job ends while no server listens: its result waits in Redis.
      await worker.waitFor(new RegExp(`^job ${ids.at(-1)}: done`));
      const onDisk = JSON.parse(await readFile(join(data, 'jobs', `${ids.at(-1)}.json`), 'utf8')) as Json;
      assert.equal(onDisk.state, 'queued');
      second = await tinyServer({ redis: url, data });
      for (const id of ids) assert.equal((await waitFinished(second, id)).state, 'done', id);
      await assertResultsOnce(data, ids);
      assert.equal(linesAbout([worker], ids[0]!, 'done').length, 1);
    } finally {
      await second?.close();
      await stopWorker(worker);
    }
    assert.equal(await jobsInRedis(url), 0);
  });

  test('a queued job and a running one are cancelled; SIGTERM lets the worker finish its job and exit 0', async () => {
    const url = freshUrl();
    const server = await tinyServer({ redis: url });
    const worker = await startWorker(url, model);
    try {
      const running = await submit(server, LONG_JOB);
      await untilStep(server, running, 1);
      const waiting = await submit(server, { prompt: 'never runs', steps: 2 });
      for (const id of [waiting, running]) {
        const response = await fetch(`${server.url}/v1/generations/${id}`, { method: 'DELETE' });
        assert.equal(response.status, 200);
        assert.equal(((await response.json()) as Json).state, 'cancelled');
      }
      const stopped = await waitFinished(server, running);
      assert.equal(stopped.state, 'cancelled');
      assert.ok((stopped.step as number) < 150, `stopped at step ${stopped.step}`);
      assert.deepEqual(stopped.images, []);
      assert.equal((await waitFinished(server, waiting)).state, 'cancelled');
      await worker.waitFor(new RegExp(`^job ${running}: cancelled`));
      assert.equal(linesAbout([worker], waiting, '').length, 0, 'the cancelled waiting job never ran');

      const last = await submit(server, { ...LONG_JOB, steps: 60 });
      await untilStep(server, last, 1);
      worker.child.kill('SIGTERM');
      assert.equal(await worker.exited, 0, worker.stderr());
      assert.equal((await waitFinished(server, last)).state, 'done');
      await assertResultsOnce(server.data, [last]);
    } finally {
      await server.close();
      await stopWorker(worker);
    }
  });

  test('the server reads the model\'s limits from its folder as a generation thread reports them', async () => {
    const thread = await GenerationWorker.start({ model, pipeline: 'kosmos-g', device: 'cpu', threads: 1 });
    try {
      assert.deepEqual(await readModelInfo(await readPipelineFolder(model)), thread.info);
    } finally {
      await thread.close();
    }
  });

  test('bad --redis values are one-line errors that name the URL without its password', async () => {
    assertOneLineError(await runCli(['worker', '--model', model, '--redis', 'http://127.0.0.1:6379']), /--redis must be a redis:\/\/ or rediss:\/\/ URL/);
    assertOneLineError(await runCli(['worker', '--model', model]), /worker needs --redis URL/);
    assertOneLineError(await runCli(['serve', '--model', model, '--port', '0', '--redis', 'localhost:6379']), /--redis must be a redis:\/\/ or rediss:\/\/ URL/);
    const refused = await runCli(['worker', '--model', model, '--redis', 'redis://:secret-one@127.0.0.1:1']);
    assertOneLineError(refused, /^cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1: .*ECONNREFUSED/);
    const wrong = await runCli(['serve', '--model', model, '--port', '0', '--data', join(scratch, 'never-redis'), '--redis', `redis://:secret-two@127.0.0.1:${redis.port}`]);
    assertOneLineError(wrong, /^cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+: WRONGPASS/);
    for (const result of [refused, wrong]) assert.ok(!/secret/.test(result.stderr + result.stdout), result.stderr);
  });
});
