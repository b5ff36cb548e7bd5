// A target that misbehaves on purpose, to check the harness itself: each variant, given an input
// holding the byte "!", does one thing a finding is made of — aborts the process, loops forever,
// takes memory without bound, throws a TypeError, throws a string, rejects a promise nobody awaits,
// or throws a multi-line message. Without "!" it refuses cleanly. It is never part of a campaign
// unless named.
import type { Target } from './target.js';

const TRIGGER = 0x21;

const misbehaviours: Record<string, () => Promise<void> | void> = {
  crash: () => process.abort(),
  hang: () => {
    for (;;);
  },
  memory: () => {
    const held: Buffer[] = [];
    // Touched pages, so that the memory is resident, not just reserved.
    for (;;) held.push(Buffer.alloc(64 * 2 ** 20, 1));
  },
  'type-error': () => {
    throw new TypeError('Cannot read properties of undefined');
  },
  'string-throw': () => {
    throw 'a string';
  },
  uncaught: () => {
    void Promise.reject(new Error('nobody waits for this'));
  },
  'multi-line': () => {
    throw new Error('first line\nsecond line');
  },
};

export const CANARY_VARIANTS = Object.keys(misbehaviours);

export const canaryTarget: Target = {
  name: 'canary',
  description: 'misbehaves on purpose (crash, hang, memory, TypeError, string throw, uncaught rejection, multi-line message) when its input holds "!"; checks the harness',
  async seeds() {
    return CANARY_VARIANTS.map((variant) => ({ variant, bytes: Buffer.from('some ! input') }));
  },
  mutate(seed, random) {
    // Drop a few bytes, so that minimisation has something to remove and some cases stay clean.
    const bytes = Buffer.from(seed.bytes);
    const start = random.int(bytes.length);
    return Uint8Array.from(Buffer.concat([bytes.subarray(0, start), bytes.subarray(start + random.int(3))]));
  },
  async run(variant, input) {
    if (!input.includes(TRIGGER)) throw new Error('no trigger in the input');
    await misbehaviours[variant]!();
    // The uncaught rejection surfaces after the case has resolved; give it a turn of the event loop.
    await new Promise((resolve) => setTimeout(resolve, 50));
  },
};
