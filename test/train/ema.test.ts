// Weight EMA through the runner, on the tiny VAE with a frozen encoder: the averages in the last
// checkpoint equal a host computation from the checkpointed parameters of every step, the sample
// grids, `train export` and `initFrom` get the averages (live values for the frozen encoder), and
// a config without `ema` parses without the key, so its hash is unchanged. Resume after SIGKILL
// is checked in resume.test.ts.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { averagedParameters, type TrainingState } from '../../src/graph/train-step.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { float16BitsToFloat32, float32ToFloat16Bits, type HostTensor } from '../../src/onnx/dtype.js';
import { listCheckpoints, readCheckpointMetadata, readCheckpointState, readInitialParameters } from '../../src/train/checkpoint.js';
import { configHash, parseConfig } from '../../src/train/config.js';
import { exportRun, runStage } from '../../src/train/runner.js';
import type { StageDefinition } from '../../src/train/stage.js';
import { vaeStage, type VaeConfig } from '../../src/train/vae.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
let scratch = '';
let tiny: Record<string, unknown> = {};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kosmos-g-ema-'));
  tiny = JSON.parse(await readFile(join(root, 'configs/train/vae-tiny.json'), 'utf8')) as Record<string, unknown>;
  // The world tests' sprite cache: small, and rendered once per machine.
  process.env['KOSMOS_G_CACHE'] = join(tmpdir(), 'kosmos-g-world-test-cache');
});
after(async () => rm(scratch, { recursive: true, force: true }));

const ema = { decay: 0.9, warmupSteps: 1 };
/** diffusers' EMAModel.get_decay (update_after_step = warmupSteps), written out independently of the code under test. */
const hostDecay = (step: number) => {
  const k = step - ema.warmupSteps - 1;
  return k <= 0 ? 0 : Math.min(ema.decay, (1 + k) / (10 + k));
};
const isFrozen = (key: string) => key.startsWith('encoder.') || key.startsWith('quant_conv.');

test('the ema section is optional: without it the parsed config has no key (same hash), with it the hash changes', () => {
  const plain = parseConfig(vaeStage.schema, tiny, 'vae-tiny.json');
  assert.ok(!('ema' in plain));
  const averaged = parseConfig(vaeStage.schema, { ...tiny, ema }, 'ema.json');
  assert.deepEqual(averaged.ema, ema);
  assert.notEqual(configHash(averaged), configHash(plain));
  assert.throws(() => parseConfig(vaeStage.schema, { ...tiny, ema: { decay: 1 } }, 'bad.json'), /decay/);
  assert.throws(() => parseConfig(vaeStage.schema, { ...tiny, ema: { decay: 0.9, warmup: 3 } }, 'bad.json'), /warmup/);
});

test('a run with ema: host-computed averages, sample grids, export and initFrom use them; frozen parameters stay live', async () => {
  const steps = 4;
  const configPath = join(scratch, 'ema.json');
  await writeFile(configPath, JSON.stringify({ ...tiny, ema, trainEncoder: false, steps, checkpointEvery: 1, keepCheckpoints: steps, sampleEvery: 2 }));
  const grids: Record<string, HostTensor>[] = [];
  const spied: StageDefinition<VaeConfig> = {
    ...vaeStage,
    async build(config, environment) {
      const instance = await vaeStage.build(config, environment);
      return {
        ...instance,
        sampleGrid: async (parameters) => {
          grids.push({ ...parameters });
          return instance.sampleGrid(parameters);
        },
      };
    },
  };
  const out = join(scratch, 'run');
  await runStage(spied, { out, configPath, threads: 1, progress: 'none', report: () => undefined });

  const states: TrainingState[] = [];
  for (const { path } of await listCheckpoints(join(out, 'checkpoints'))) states.push(await readCheckpointState({ path, metadata: await readCheckpointMetadata(path) }));
  assert.deepEqual(states.map((state) => state.step), [1, 2, 3, 4]);
  const last = states.at(-1)!;
  const trainable = Object.keys(last.parameters).filter((key) => !isFrozen(key));
  assert.deepEqual(Object.keys(last.optimizer).filter((name) => name.startsWith('ema.')).sort(), trainable.map((key) => `ema.${key}`).sort());

  // Step 1 has decay 0, so the average starts from the parameters after step 1 whatever it held
  // before. Errors are measured relative to the average of |parameter|: where parameters of both
  // signs cancel, float32 rounding of the terms is all an average can be held to.
  let worst = 0;
  for (const key of trainable) {
    const average = new Float64Array(last.parameters[key]!.data.length);
    const magnitude = new Float64Array(average.length);
    for (const state of states) {
      const decay = hostDecay(state.step);
      const parameter = state.parameters[key]!.data as Float32Array;
      for (let i = 0; i < average.length; i++) {
        average[i] = decay * average[i]! + (1 - decay) * parameter[i]!;
        magnitude[i] = decay * magnitude[i]! + (1 - decay) * Math.abs(parameter[i]!);
      }
    }
    const actual = last.optimizer[`ema.${key}`]!.data as Float32Array;
    for (let i = 0; i < average.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - average[i]!) / (magnitude[i]! || 1));
  }
  assert.ok(worst <= 1e-6, `EMA differs from the host computation by ${worst} (relative)`);
  const averaged = averagedParameters(last);
  const changedByAveraging = trainable.filter((key) => Buffer.compare(Buffer.from(averaged[key]!.data.buffer), Buffer.from(last.parameters[key]!.data.buffer)) !== 0);
  assert.ok(changedByAveraging.length > 10, `only ${changedByAveraging.length} averaged tensors differ from the live ones`);
  for (const key of Object.keys(last.parameters).filter(isFrozen)) assert.equal(averaged[key], last.parameters[key], `${key} is frozen: live value`);

  // Grids at steps 2 and 4, and at the end of the session (step 4 again).
  assert.equal(grids.length, 3);
  assert.deepEqual(grids[0], averagedParameters(states[1]!));
  assert.deepEqual(grids[1], averaged);
  assert.deepEqual(grids[2], averaged);

  const exported = join(scratch, 'exported');
  assert.deepEqual(await exportRun(out, exported), { stage: 'vae', step: steps });
  const written = await readSafetensors(join(exported, 'model.safetensors'), { asFloat32: true });
  for (const [key, tensor] of Object.entries(averaged)) {
    const expected = Float32Array.from(tensor.data as Float32Array, (v) => float16BitsToFloat32(float32ToFloat16Bits(v)));
    assert.deepEqual(written.get(key)?.data, expected, key);
  }
  // A second export into the folder refuses to replace its files without force and leaves them; with
  // force it replaces them and keeps what else the folder holds (exports assemble pipeline folders).
  const firstBytes = await readFile(join(exported, 'model.safetensors'));
  await writeFile(join(exported, 'model.safetensors'), 'edited by hand');
  await writeFile(join(exported, 'NOTES.txt'), 'kept');
  await assert.rejects(exportRun(out, exported), (error: Error) => error.message.startsWith(`${exported}/`) && /already exists \(and 2 more of the export's files\); pass --force to replace them$/.test(error.message));
  assert.equal(await readFile(join(exported, 'model.safetensors'), 'utf8'), 'edited by hand');
  assert.deepEqual(await exportRun(out, exported, { force: true }), { stage: 'vae', step: steps });
  assert.deepEqual(await readFile(join(exported, 'model.safetensors')), firstBytes);
  assert.equal(await readFile(join(exported, 'NOTES.txt'), 'utf8'), 'kept');
  assert.deepEqual((await readdir(scratch)).filter((name) => name.includes('.export-')), []);

  const initial = await readInitialParameters(out, 'vae', last.parameters, { importModel: () => Promise.reject(new Error('a run folder is not imported')) });
  assert.deepEqual(initial.parameters, averaged);
});
