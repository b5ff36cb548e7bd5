import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Runtime } from '../../src/graph/runtime.js';
import type { HostTensor } from '../../src/onnx/dtype.js';
import { KosmosGConditionEncoder, guidanceConditionBatch } from '../../src/pipeline/condition.js';
import { assertParity } from '../parity/fixtures.js';
import { TINY_QUERIES, solidPng, writeTinyConditionFolder } from './tiny-condition-folder.js';

test('fixture 11: the official condition path (image latents, MLLM states, condition, null condition, CFG batch)', async () => {
  await assertParity('11_kosmosg_condition');
});

let directory: string;
let runtime: Runtime;
let encoder: KosmosGConditionEncoder;

before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'kosmos-condition-'));
  await writeTinyConditionFolder(directory);
  runtime = await Runtime.create({ device: 'cpu', threads: 1 });
  encoder = await KosmosGConditionEncoder.fromPipelineFolder(directory, { runtime });
});

after(async () => {
  await runtime.dispose();
  await rm(directory, { recursive: true, force: true });
});

function maxDifference(a: HostTensor, b: HostTensor): number {
  assert.deepEqual(a.shape, b.shape);
  let max = 0;
  for (let i = 0; i < a.data.length; i++) max = Math.max(max, Math.abs(Number(a.data[i]) - Number(b.data[i])));
  return max;
}

test('an interleaved prompt with two images gives one (1, 77, d) condition; the layout uses Q from the connector', async () => {
  assert.equal(encoder.queries, TINY_QUERIES);
  assert.deepEqual(encoder.conditionShape, [77, 16]);
  const dog = await solidPng(20, 16, [180, 120, 60]);
  const hat = await solidPng(16, 24, [20, 40, 220], [250, 250, 0]);
  const layout = encoder.layout('<i> wearing <i> on the beach', 2);
  assert.equal(layout.tokens.length, 1 + (TINY_QUERIES + 2) + 1 + (TINY_QUERIES + 2) + 3);
  const condition = await encoder.encode('<i> wearing <i> on the beach', [dog, hat]);
  assert.deepEqual(condition.shape, [1, 77, 16]);
  assert.ok(Array.from(condition.data as Float32Array).every(Number.isFinite));
  // Deterministic, and the images matter (order included).
  assert.equal(maxDifference(await encoder.encode('<i> wearing <i> on the beach', [dog, hat]), condition), 0);
  assert.ok(maxDifference(await encoder.encode('<i> wearing <i> on the beach', [hat, dog]), condition) > 1e-4);
});

test('the unconditional condition is M(MLLM([<s>] + negative tokens)), the same graph as a text-only prompt', async () => {
  const unconditional = await encoder.encodeUnconditional();
  assert.deepEqual(unconditional.shape, [1, 77, 16]);
  assert.equal(maxDifference(unconditional, await encoder.encode('', [])), 0);
  const negative = await encoder.encodeUnconditional('on the beach');
  assert.equal(maxDifference(negative, await encoder.encode('on the beach', [])), 0);
  assert.ok(maxDifference(negative, unconditional) > 1e-4);
  const batch = guidanceConditionBatch(unconditional, negative, 2);
  assert.deepEqual(batch.shape, [4, 77, 16]);
  const row = 77 * 16;
  assert.deepEqual(batch.data.subarray(row, 2 * row), unconditional.data);
  assert.deepEqual(batch.data.subarray(3 * row), negative.data);
});

test('bad input: count mismatches are reported before any image is read; bad images name the image', async () => {
  await assert.rejects(encoder.encode('<i> wearing <i>', [join(directory, 'missing.png')]), /the prompt has 2 <i> placeholders but 1 image was given/);
  await assert.rejects(encoder.encode('a dog', [await solidPng(8, 8, [0, 0, 0])]), /the prompt has 0 <i> placeholders but 1 image was given/);
  await assert.rejects(encoder.encode('<i> wearing', [Buffer.from('corrupt')]), /image 1 \(7 bytes\): not a readable image/);
  await assert.rejects(encoder.encodeUnconditional('<i>'), /negative prompt cannot contain <i>/);
});

test('a folder with a missing or inconsistent component is refused with its path', async () => {
  const broken = await mkdtemp(join(tmpdir(), 'kosmos-condition-broken-'));
  try {
    await writeTinyConditionFolder(broken, 2);
    await rm(join(broken, 'aligner'), { recursive: true });
    await assert.rejects(KosmosGConditionEncoder.fromPipelineFolder(broken, { runtime }), /aligner.config\.json.*ENOENT/);
    await writeTinyConditionFolder(broken, 2);
    await writeFile(join(broken, 'connector', 'config.json'), JSON.stringify({ input_dim: 16, output_dim: 32, latent_query_num: 4, decoder_attention_heads: 2, attention_dropout: 0 }));
    await assert.rejects(KosmosGConditionEncoder.fromPipelineFolder(broken, { runtime }), /connector output_dim 32 does not match the MLLM width 24/);
  } finally {
    await rm(broken, { recursive: true, force: true });
  }
});
