// The HTTP API over real HTTP, on the tiny random pipeline: every endpoint, and every refusal the
// issue lists (limits, malformed input, assets, cross-origin writes, foreign Host, bad keys).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readPngText } from '../../src/pipeline/image_output.js';
import type { RunningServer } from '../../src/server/server.js';
import { colourPng, postJson, rawRequest, readEvents, tinyServer, waitFinished } from './server-helpers.js';

type Json = Record<string, unknown>;
const errorOf = async (response: Response) => ((await response.json()) as { error: { code: string; message: string } }).error;

describe('the API', () => {
  let server: RunningServer;
  let red: { bytes: Buffer; dataUrl: string };
  let blue: { bytes: Buffer; dataUrl: string };

  before(async () => {
    server = await tinyServer();
    red = await colourPng('red');
    blue = await colourPng('blue');
  });
  after(() => server.close());

  test('a JSON generation streams its steps with previews and ends with PNGs that carry their settings', async () => {
    const response = await postJson(server, { prompt: '<i> on the beach', images: [red.dataUrl], steps: 4, seed: 11, negativePrompt: 'blurry' });
    assert.equal(response.status, 202);
    const submitted = (await response.json()) as { id: string; queuePosition: number; seed: number };
    assert.match(submitted.id, /^[0-9a-f]{32}$/);
    assert.equal(submitted.seed, 11);
    const events = await readEvents(server, submitted.id);
    const names = events.map((event) => event.event);
    assert.ok(names.includes('started'), names.join());
    assert.equal(names.at(-1), 'done');
    const steps = events.filter((event) => event.event === 'step');
    assert.deepEqual(steps.map((event) => event.data.step), [1, 2, 3, 4]);
    assert.match(String(steps.at(-1)!.data.preview), /^data:image\/png;base64,/);

    const status = (await (await fetch(`${server.url}/v1/generations/${submitted.id}`)).json()) as Json;
    assert.equal(status.state, 'done');
    assert.equal(status.step, 4);
    assert.deepEqual((status.settings as Json).seed, 11);
    const [url] = status.images as string[];
    const png = Buffer.from(await (await fetch(`${server.url}${url}`)).arrayBuffer());
    const parameters = readPngText(png).parameters!;
    assert.match(parameters, /^<i> on the beach\nNegative prompt: blurry\nSteps: 4, Sampler: DPM\+\+ 2M, CFG scale: 6, Seed: 11, Size: 64x64/);
    const sidecar = (await (await fetch(`${server.url}${url!.replace(/\.png$/, '.json')}`)).json()) as Json;
    assert.equal(sidecar.seed, 11);
    assert.equal(sidecar.prompt, '<i> on the beach');

    const list = (await (await fetch(`${server.url}/v1/generations?limit=5`)).json()) as { generations: Json[] };
    assert.equal(list.generations[0]!.id, submitted.id);
    // A late subscriber of a finished job gets `done` at once.
    assert.deepEqual((await readEvents(server, submitted.id)).map((event) => event.event), ['done']);
  });

  test('a multipart generation with two image files; a missing seed is drawn and reported', async () => {
    const form = new FormData();
    form.set('prompt', '<i> wearing <i>');
    form.set('steps', '2');
    form.append('images', new Blob([red.bytes], { type: 'image/png' }), 'red.png');
    form.append('images', new Blob([blue.bytes], { type: 'image/png' }), 'blue.png');
    const response = await fetch(`${server.url}/v1/generations`, { method: 'POST', body: form });
    assert.equal(response.status, 202, await response.clone().text());
    const { id, seed } = (await response.json()) as { id: string; seed: number };
    assert.ok(Number.isInteger(seed) && seed >= 0);
    const status = await waitFinished(server, id);
    assert.equal(status.state, 'done', JSON.stringify(status));
    assert.equal((status.settings as Json).images, 2);
    assert.equal((status.settings as Json).seed, seed);
  });

  test('limits and malformed requests are refused with a JSON error before anything is queued', async () => {
    const cases: [unknown, number, string][] = [
      [{ prompt: '<i>'.repeat(11), images: Array(11).fill(red.dataUrl) }, 400, 'too_many_images'],
      [{ prompt: '<i> and <i>', images: [red.dataUrl] }, 400, 'image_count_mismatch'],
      [{ prompt: '<i>', images: ['data:image/png;base64,aGVsbG8='] }, 400, 'invalid_image'],
      [{ prompt: '<i>', images: ['/etc/passwd'] }, 400, 'invalid_request'],
      [{ prompt: 'x', steps: 151 }, 400, 'invalid_request'],
      [{ prompt: 'x', numImages: 5 }, 400, 'invalid_request'],
      [{ prompt: 'x', width: 72 }, 400, 'invalid_size'],
      [{ prompt: 'x', width: 2048 }, 400, 'invalid_request'],
      [{ prompt: 'x'.repeat(2001) }, 400, 'invalid_request'],
      [{ prompt: 'x', lora: { name: 'nope' } }, 400, 'unknown_asset'],
      [{ prompt: 'x', lora: { name: '../x' } }, 400, 'invalid_request'],
      [{ prompt: 'x', controlnet: { name: '/etc/passwd' } }, 400, 'invalid_request'],
      [{ prompt: 'x', unknownField: 1 }, 400, 'invalid_request'],
      [{}, 400, 'invalid_request'],
    ];
    for (const [body, status, code] of cases) {
      const response = await postJson(server, body);
      assert.equal(response.status, status, JSON.stringify(body).slice(0, 80));
      const error = await errorOf(response);
      assert.equal(error.code, code, `${JSON.stringify(body).slice(0, 80)}: ${error.message}`);
      assert.doesNotMatch(error.message, /\n/);
    }
    const badJson = await fetch(`${server.url}/v1/generations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt": ' });
    assert.equal(badJson.status, 400);
    assert.equal((await errorOf(badJson)).code, 'invalid_request');
  });

  test('multipart: eleven files, an oversized file and a malformed body are refused', async () => {
    const eleven = new FormData();
    eleven.set('prompt', '<i>'.repeat(11));
    for (let i = 0; i < 11; i++) eleven.append('images', new Blob([red.bytes], { type: 'image/png' }), `${i}.png`);
    const tooMany = await fetch(`${server.url}/v1/generations`, { method: 'POST', body: eleven });
    assert.equal(tooMany.status, 400);
    assert.equal((await errorOf(tooMany)).code, 'too_many_images');

    const big = new FormData();
    big.set('prompt', '<i>');
    big.append('images', new Blob([Buffer.alloc(17 * 1024 * 1024, 7)], { type: 'image/png' }), 'big.png');
    const oversized = await fetch(`${server.url}/v1/generations`, { method: 'POST', body: big });
    assert.equal(oversized.status, 413);
    assert.equal((await errorOf(oversized)).code, 'too_large');

    const malformed = await rawRequest(`${server.url}/v1/generations`, {
      method: 'POST',
      headers: { host: new URL(server.url).host, 'content-type': 'multipart/form-data; boundary=XYZ' },
      body: '--XYZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello\r\n--XYZ\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\nContent-Type: image/png\r\n\r\ntruncated',
    });
    assert.ok(malformed.status >= 400 && malformed.status < 500, `${malformed.status} ${malformed.body.toString()}`);
    assert.ok((malformed.json() as { error: { code: string } }).error.code);
  });

  test('cross-origin writes and foreign Host headers are refused; same-origin writes pass', async () => {
    const host = new URL(server.url).host;
    for (const origin of ['https://evil.example', 'null', `http://${host}.evil.example`]) {
      const response = await postJson(server, { prompt: 'x', steps: 1 }, { origin });
      assert.equal(response.status, 403, origin);
      assert.equal((await errorOf(response)).code, 'cross_origin');
    }
    const crossSite = await postJson(server, { prompt: 'x', steps: 1 }, { 'sec-fetch-site': 'cross-site' });
    assert.equal(crossSite.status, 403);
    const sameOrigin = await postJson(server, { prompt: 'x', steps: 1 }, { origin: server.url, 'sec-fetch-site': 'same-origin' });
    assert.equal(sameOrigin.status, 202);
    await waitFinished(server, ((await sameOrigin.json()) as { id: string }).id);

    for (const method of ['GET', 'POST']) {
      const rebinding = await rawRequest(`${server.url}/v1/models`, { method, headers: { host: 'attacker.example:80' } });
      assert.equal(rebinding.status, 403, method);
      assert.equal((rebinding.json() as { error: { code: string } }).error.code, 'forbidden_host');
    }
    assert.equal((await rawRequest(`${server.url}/healthz`, { headers: { host: `localhost:${new URL(server.url).port}` } })).status, 200);
  });

  test('ids and image names are never paths; unknown ones are 404; a finished job cannot be cancelled', async () => {
    for (const path of ['/v1/images/..%2f..%2fjobs', '/v1/images/../../package.json', '/v1/images/0123456789abcdef0123456789abcdef-0.png', '/v1/generations/..%2fx', '/v1/generations/0123456789abcdef0123456789abcdef']) {
      const response = await rawRequest(`${server.url}${path}`, { headers: { host: new URL(server.url).host } });
      assert.equal(response.status, 404, path);
    }
    const done = (await (await fetch(`${server.url}/v1/generations?limit=1`)).json()) as { generations: Json[] };
    const cancel = await fetch(`${server.url}/v1/generations/${done.generations[0]!.id}`, { method: 'DELETE' });
    assert.equal(cancel.status, 409);
  });

  test('models, health, metrics and the OpenAPI document', async () => {
    const models = (await (await fetch(`${server.url}/v1/models`)).json()) as { models: Json[] };
    assert.equal(models.models[0]!.pipeline, 'kosmos-g');
    assert.deepEqual((models.models[0]!.defaults as Json).width, 64);
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as Json;
    assert.equal(health.status, 'ok');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /^kosmos_g_queue_length 0$/m);
    assert.match(metrics, /^kosmos_g_jobs\{state="done"\} [1-9]/m);
    assert.match(metrics, /^kosmos_g_generation_seconds_count [1-9]/m);
    const document = (await (await fetch(`${server.url}/openapi.json`)).json()) as { openapi: string; paths: Json; components: { schemas: { GenerationRequest: { properties: Json } } } };
    assert.equal(document.openapi, '3.1.0');
    for (const path of ['/v1/generations', '/v1/generations/{id}', '/v1/generations/{id}/events', '/v1/images/{name}', '/v1/models', '/healthz', '/metrics']) assert.ok(path in document.paths, path);
    assert.deepEqual(Object.keys(document.components.schemas.GenerationRequest.properties).sort(), ['controlnet', 'guidance', 'height', 'images', 'lora', 'negativePrompt', 'numImages', 'prompt', 'scheduler', 'seed', 'steps', 'width']);
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.equal(page.headers.get('access-control-allow-origin'), null);
  });
});
