// The queue and the server's life: a full queue answers 429, jobs are cancelled while queued and
// while running, a restarted server keeps its results, a clean shutdown records the waiting jobs
// as cancelled, a crash's unfinished jobs come back as failed; API keys, binding and rate limits.
import sharp from 'sharp';
import assert from 'node:assert/strict';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startServer } from '../../src/server/server.js';
import { scratch, tinyExtras, tinyPipeline } from '../pipeline/tiny.js';
import { WORLD_TEST_CACHE } from '../train/train-cli.js';
import { postJson, readEvents, tinyServer, waitFinished } from './server-helpers.js';

type Json = Record<string, unknown>;
const idOf = async (response: Response) => ((await response.json()) as { id: string }).id;

test('a full queue answers 429 with Retry-After; jobs are cancelled while queued and while running', async () => {
  const server = await tinyServer({ maxQueue: 1 });
  try {
    const running = await idOf(await postJson(server, { prompt: 'a long one', steps: 150, seed: 1 }));
    // Wait until the first job holds the thread, so the next one waits in the queue.
    let firstStep!: () => void;
    const stepped = new Promise<void>((resolve) => (firstStep = resolve));
    const runningEvents = readEvents(server, running, (event) => {
      if (event.event === 'step' && event.data.step === 1) firstStep();
    });
    await stepped;
    const waitingResponse = await postJson(server, { prompt: 'waits', steps: 2 });
    assert.equal(waitingResponse.status, 202);
    const waiting = (await waitingResponse.json()) as { id: string; queuePosition: number };
    assert.equal(waiting.queuePosition, 0);
    const refused = await postJson(server, { prompt: 'one too many', steps: 2 });
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'queue_full');

    const cancelQueued = await fetch(`${server.url}/v1/generations/${waiting.id}`, { method: 'DELETE' });
    assert.equal(cancelQueued.status, 200);
    assert.equal(((await cancelQueued.json()) as Json).state, 'cancelled');
    const cancelRunning = await fetch(`${server.url}/v1/generations/${running}`, { method: 'DELETE' });
    assert.equal(cancelRunning.status, 200);
    const events = await runningEvents;
    assert.equal(events.at(-1)!.event, 'cancelled');
    const status = await waitFinished(server, running);
    assert.equal(status.state, 'cancelled');
    assert.ok((status.step as number) < 150, `stopped at step ${status.step}`);
    assert.deepEqual(status.images, []);
    assert.equal((await waitFinished(server, waiting.id)).state, 'cancelled');
    // The thread is free again.
    const after = await idOf(await postJson(server, { prompt: 'after', steps: 2 }));
    assert.equal((await waitFinished(server, after)).state, 'done');
  } finally {
    await server.close();
  }
});

test('a restarted server lists earlier results; a clean shutdown cancels the waiting jobs; a crash\'s jobs come back failed', async () => {
  const first = await tinyServer();
  const done = await idOf(await postJson(first, { prompt: 'kept', steps: 2, seed: 5 }));
  assert.equal((await waitFinished(first, done)).state, 'done');
  const long = await idOf(await postJson(first, { prompt: 'finishes at shutdown', steps: 30 }));
  const queued = await idOf(await postJson(first, { prompt: 'never runs', steps: 2 }));
  await first.close();
  // A job record left "running" by a process that died.
  const crashed = 'f'.repeat(32);
  const record = { id: crashed, state: 'running', step: 3, totalSteps: 9, createdAt: new Date(Date.now() - 1000).toISOString(), timings: {}, settings: { model: 'tiny', prompt: 'x', negativePrompt: '', images: 0, steps: 9, guidance: 6, scheduler: 'dpm++', seed: 1, numImages: 1, width: 64, height: 64, lora: null, controlnet: null }, images: [], warnings: [] };
  await writeFile(join(first.data, 'jobs', `${crashed}.json`), JSON.stringify(record));

  const second = await tinyServer({ data: first.data });
  try {
    const list = (await (await fetch(`${second.url}/v1/generations`)).json()) as { generations: Json[] };
    const byId = new Map(list.generations.map((job) => [job.id as string, job]));
    assert.equal(byId.get(done)!.state, 'done');
    const image = await fetch(`${second.url}${(byId.get(done)!.images as string[])[0]}`);
    assert.equal(image.status, 200);
    assert.equal(byId.get(long)!.state, 'done', 'the running job finished at shutdown');
    assert.equal(byId.get(queued)!.state, 'cancelled');
    assert.match((byId.get(queued)!.warnings as string[]).join(), /shut down/);
    assert.equal(byId.get(crashed)!.state, 'failed');
    assert.equal((byId.get(crashed)!.error as Json).code, 'interrupted');
  } finally {
    await second.close();
  }
});

test('finished jobs beyond --max-results are deleted with their files, oldest first', async () => {
  const server = await tinyServer({ maxResults: 2 });
  const ids: string[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      ids.push(await idOf(await postJson(server, { prompt: `job ${i}`, steps: 1 })));
      await waitFinished(server, ids.at(-1)!);
    }
    assert.equal((await fetch(`${server.url}/v1/generations/${ids[0]}`)).status, 404);
  } finally {
    // Closing waits for the files of pruned jobs to be removed.
    await server.close();
  }
  const images = await readdir(join(server.data, 'images'));
  assert.ok(!images.some((name) => name.startsWith(ids[0]!)), images.join());
  assert.equal(images.length, 4);
});

test('an API key is required on the API, compared exactly; health and the page stay open', async () => {
  const server = await tinyServer({ apiKey: 'correct horse' });
  try {
    for (const authorization of [undefined, 'Bearer wrong', 'Bearer correct horse2', 'Basic correct horse']) {
      const response = await postJson(server, { prompt: 'x', steps: 1 }, authorization ? { authorization } : {});
      assert.equal(response.status, 401, authorization);
      assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'unauthorized');
    }
    assert.equal((await fetch(`${server.url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${server.url}/`)).status, 200);
    const headers = { authorization: 'Bearer correct horse' };
    const accepted = await postJson(server, { prompt: 'x', steps: 1 }, headers);
    assert.equal(accepted.status, 202);
    assert.equal((await waitFinished(server, await idOf(accepted), headers)).state, 'done');
  } finally {
    await server.close();
  }
});

test('binding beyond loopback needs an API key or --insecure', async () => {
  await assert.rejects(startServer({ model: await tinyPipeline(), data: '/nonexistent', host: '0.0.0.0', port: 0 }), /refusing to bind 0\.0\.0\.0 without --api-key/);
});

test('submissions beyond the rate limit answer 429 with Retry-After', async () => {
  const server = await tinyServer({ rateLimit: 2 });
  try {
    const statuses: number[] = [];
    let last!: Response;
    for (let i = 0; i < 3; i++) {
      last = await postJson(server, { prompt: 'x', steps: 1 });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [202, 202, 429]);
    assert.ok(last.headers.get('retry-after'));
    assert.equal(((await last.json()) as { error: { code: string } }).error.code, 'rate_limited');
  } finally {
    await server.close();
  }
});

test('a second server on the same results folder is refused while the first runs', async () => {
  const first = await tinyServer();
  try {
    await assert.rejects(tinyServer({ data: first.data }), /is in use by another server .*stop it, or serve with another --data/);
  } finally {
    await first.close();
  }
  const again = await tinyServer({ data: first.data });
  await again.close();
});

test('LoRAs and ControlNets are used by the names the server was started with; results name them, never their paths', async () => {
  const extras = await tinyExtras();
  const server = await tinyServer({ loras: { style: extras.lora }, controlnets: { edges: extras.controlnet } });
  try {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { models: { loras: string[]; controlnets: string[] }[] };
    assert.deepEqual([models.models[0]!.loras, models.models[0]!.controlnets], [['style'], ['edges']]);
    const control = `data:image/png;base64,${(await readFile(extras.controlImage)).toString('base64')}`;
    const body = { prompt: 'x', steps: 2, seed: 3, lora: { name: 'style', scale: 0.5 }, controlnet: { name: 'edges', image: control, scale: 0.8 } };
    const status = await waitFinished(server, await idOf(await postJson(server, body)));
    assert.equal(status.state, 'done', JSON.stringify(status.error));
    assert.deepEqual([(status.settings as Json).lora, (status.settings as Json).controlnet], [{ name: 'style', scale: 0.5 }, { name: 'edges', scale: 0.8 }]);
    const sidecar = await (await fetch(`${server.url}${(status.images as string[])[0]!.replace(/\.png$/, '.json')}`)).text();
    assert.ok(!sidecar.includes(extras.lora) && !sidecar.includes(extras.controlnet), sidecar);
    const withoutImage = await postJson(server, { prompt: 'x', controlnet: { name: 'edges' } });
    assert.equal(((await withoutImage.json()) as { error: { code: string } }).error.code, 'missing_control_image');
    const withoutWorld = await postJson(server, { prompt: 'x', controlnet: { name: 'edges', preprocess: { kind: 'layout', scene: { subjects: [{ concept: 'cat', style: 'noto', position: 'left' }] } } } });
    assert.equal(withoutWorld.status, 400);
    assert.deepEqual(((await withoutWorld.json()) as Json).error, { code: 'no_world', message: 'layout maps need a world model (tiny has no world.json)' });

    // A 2:1 control image sets the size the request leaves open; Canny makes the map from it.
    const wide = `data:image/png;base64,${(await sharp({ create: { width: 96, height: 48, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer()).toString('base64')}`;
    const canny = await waitFinished(server, await idOf(await postJson(server, { prompt: 'x', steps: 2, seed: 3, controlnet: { name: 'edges', image: wide, preprocess: { kind: 'canny', low: 50 } } })));
    assert.equal(canny.state, 'done', JSON.stringify(canny.error));
    const settings = canny.settings as Json;
    assert.equal(settings.width, 2 * (settings.height as number));
    assert.deepEqual((settings.controlnet as Json).preprocess, { kind: 'canny', low: 50 });
    const squashed = await postJson(server, { prompt: 'x', width: 64, height: 64, controlnet: { name: 'edges', image: wide } });
    assert.equal(squashed.status, 400);
    assert.match(((await squashed.json()) as { error: { code: string; message: string } }).error.message, /the control image is 96×48, another aspect ratio than the 64×64 asked/);
  } finally {
    await server.close();
  }
});

test('a layout preprocess draws the map of a world scene in the model\'s world; the job records the scene', async () => {
  const extras = await tinyExtras();
  // The tiny model has no world: this copy is a world model of two concepts, drawn from the world tests' sprite cache.
  const model = join(scratch, 'serve-world-model');
  await cp(await tinyPipeline(), model, { recursive: true });
  await writeFile(join(model, 'world.json'), JSON.stringify({ sceneSize: 64, concepts: ['cat', 'dog'], splits: ['train'], splitSeed: 0 }));
  const server = await tinyServer({ model, cache: WORLD_TEST_CACHE, controlnets: { layout: extras.controlnet } });
  try {
    const scene = { subjects: [{ concept: 'cat', style: 'noto', position: 'left', size: 'large' }, { concept: 'dog', style: 'twemoji', position: 'right' }] };
    const recorded = { subjects: [scene.subjects[0], { ...scene.subjects[1], size: 'medium' }] };
    const status = await waitFinished(server, await idOf(await postJson(server, { prompt: 'x', steps: 2, seed: 3, controlnet: { name: 'layout', preprocess: { kind: 'layout', scene } } })));
    assert.equal(status.state, 'done', JSON.stringify(status.error));
    const settings = status.settings as Json;
    assert.deepEqual([settings.width, settings.height], [64, 64], 'the size of the world\'s scenes');
    assert.deepEqual(settings.controlnet, { name: 'layout', scale: 1, preprocess: { kind: 'layout', scene: recorded } });
    const sidecar = (await (await fetch(`${server.url}${(status.images as string[])[0]!.replace(/\.png$/, '.json')}`)).json()) as Json;
    assert.deepEqual((sidecar.controlnet as Json).preprocess, { kind: 'layout', scene: recorded });

    const control = `data:image/png;base64,${(await readFile(extras.controlImage)).toString('base64')}`;
    const refusals: [unknown, string, RegExp][] = [
      [{ name: 'layout', image: control, preprocess: { kind: 'layout', scene } }, 'unexpected_control_image', /^a layout preprocess draws the control map from its scene; send no control image$/],
      [{ name: 'layout', preprocess: { kind: 'layout', scene: { subjects: [{ ...scene.subjects[0], concept: 'unicorn' }] } } }, 'invalid_scene', /^controlnet\.preprocess\.scene: subject 1: unknown concept "unicorn" \(this world has cat, dog\)$/],
      [{ name: 'layout', preprocess: { kind: 'layout', scene: { subjects: [scene.subjects[0], { ...scene.subjects[1], position: 'left' }] } } }, 'invalid_scene', /subject 2: subject 1 is at left already/],
      [{ name: 'layout', preprocess: { kind: 'layout', scene: { subjects: [{ ...scene.subjects[0], position: 'middle' }] } } }, 'invalid_request', /^controlnet\.preprocess\.scene\.subjects\.0\.position: position must be one of left, right, /],
      [{ name: 'layout', preprocess: { kind: 'layout', scene: { subjects: [] } } }, 'invalid_request', /^controlnet\.preprocess\.scene\.subjects: a layout scene has 1 to 3 subjects$/],
    ];
    for (const [controlnet, code, message] of refusals) {
      const response = await postJson(server, { prompt: 'x', controlnet });
      assert.equal(response.status, 400, JSON.stringify(controlnet));
      const { error } = (await response.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, code, error.message);
      assert.match(error.message, message);
    }
  } finally {
    await server.close();
  }
});
