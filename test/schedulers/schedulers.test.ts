import test from 'node:test';
import assert from 'node:assert/strict';
import { assertParity } from '../parity/fixtures.js';
import { DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, schedulerByName, schedulerFromConfig } from '../../src/schedulers/index.js';
import { parsePythonJson } from '../../src/io/config-json.js';

const sd15 = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', set_alpha_to_one: false, steps_offset: 1, skip_prk_steps: true } as const;

test('every scheduler trajectory, DDPM add_noise and the beta tables match diffusers step by step (fixture 06)', async () => {
  await assertParity('06_schedulers');
});

test('DPM-Solver++ with 50 linspace steps uses timesteps 999, 979, …, 20 (the Kosmos-G demo schedule)', () => {
  const scheduler = new DPMSolverMultistepScheduler({ ...sd15, final_sigmas_type: 'sigma_min' });
  scheduler.setTimesteps(50);
  assert.equal(scheduler.timesteps.length, 50);
  assert.deepEqual(scheduler.timesteps.slice(0, 3), [999, 979, 959]);
  assert.equal(scheduler.timesteps.at(-1), 20);
});

test('schedules: DDIM leading spacing with offset, PNDM repeats its second timestep, Euler starts at σ_max', () => {
  const ddim = new DDIMScheduler(sd15);
  ddim.setTimesteps(10);
  assert.deepEqual(ddim.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  const pndm = new PNDMScheduler(sd15);
  pndm.setTimesteps(10);
  assert.deepEqual(pndm.timesteps, [901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  const euler = new EulerDiscreteScheduler({ ...sd15, timestep_spacing: 'linspace' });
  euler.setTimesteps(10);
  assert.equal(euler.timesteps[0], 999);
  assert.ok(Math.abs(euler.initNoiseSigma - 14.6146) < 1e-3);
  assert.equal(euler.sigmas.at(-1), 0);
});

test('bad scheduler input gives clear errors', () => {
  assert.throws(() => schedulerByName('heun', sd15), /unknown scheduler heun \(choose dpm\+\+, ddim, pndm, euler\)/);
  assert.throws(() => schedulerFromConfig({ _class_name: 'LMSDiscreteScheduler' }), /unknown scheduler LMSDiscreteScheduler/);
  assert.throws(() => new DDIMScheduler({ beta_schedule: 'cubic' as never }), /unknown beta_schedule cubic/);
  assert.throws(() => new DPMSolverMultistepScheduler({ algorithm_type: 'sde-dpmsolver++' }), /algorithm_type sde-dpmsolver\+\+ is not supported/);
  const ddim = new DDIMScheduler(sd15);
  assert.throws(() => ddim.step(new Float32Array(4), 1, new Float32Array(4)), /call setTimesteps before step/);
  assert.throws(() => ddim.setTimesteps(0), /integer in 1…1000/);
  ddim.setTimesteps(5);
  assert.throws(() => ddim.step(new Float32Array(4), ddim.timesteps[0]!, new Float32Array(5)), /model output has 4 values, sample has 5/);
  const ddpm = new DDPMScheduler(sd15);
  assert.throws(() => ddpm.addNoise(new Float32Array(8), new Float32Array(8), [1000, 0]), /timestep 1000 is outside 0…999/);
});

test('python-style JSON: NaN and ±Infinity tokens are numbers, inside strings they are text', () => {
  const parsed = parsePythonJson('{"a": -Infinity, "b": [NaN, Infinity], "c": "-Infinity"}') as Record<string, unknown>;
  assert.equal(parsed['a'], -Infinity);
  assert.ok(Number.isNaN((parsed['b'] as number[])[0]));
  assert.equal((parsed['b'] as number[])[1], Infinity);
  assert.equal(parsed['c'], '-Infinity');
  assert.throws(() => parsePythonJson('{"a": }', 'x.json'), /x\.json: invalid JSON/);
});
