// Images as the vision tower's input: PNG, JPEG, WebP and GIF files (several encodings of each,
// made here with sharp) and data URLs, through preprocessImages — sharp's header read, the size
// limits, then decode, resize and crop — at the mini model's 64-pixel input size. Mutations hit the
// fields decoders trust (fuzz/formats/image-layout.ts) and whole chunks; most are repaired (CRCs,
// the RIFF size) so that the damage reaches the decoder instead of its first checksum.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { preprocessImages } from '../../src/pipeline/images.js';
import { type ImageFormat, imageLayouts } from '../formats/image-layout.js';
import { boundaryInteger, mutateBytes, mutateText, writeInteger } from '../mutate.js';
import type { Random } from '../random.js';
import type { Seed, Target } from './target.js';

/** kosmos-g-mini's vision input size. */
const IMAGE_SIZE = 64;

function gradient(width: number, height: number, channels: 3 | 4): Buffer {
  const pixels = Buffer.alloc(width * height * channels);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 37 + Math.floor(i / channels) * 11) & 0xff;
  return pixels;
}

async function encodedSeeds(): Promise<Seed[]> {
  const image = (channels: 3 | 4) => sharp(gradient(12, 9, channels), { raw: { width: 12, height: 9, channels } });
  const encodings: [ImageFormat, Sharp][] = [
    ['png', image(3).png()],
    ['png', image(4).png({ palette: true, colours: 16 })],
    ['png', image(3).toColourspace('grey16').png()],
    ['png', image(3).png({ progressive: true })],
    ['jpeg', image(3).jpeg({ quality: 80 })],
    ['jpeg', image(3).jpeg({ progressive: true, chromaSubsampling: '4:4:4' })],
    ['jpeg', image(3).greyscale().jpeg()],
    ['webp', image(3).webp({ quality: 70 })],
    ['webp', image(4).webp({ lossless: true })],
    ['webp', image(4).webp({ quality: 50, alphaQuality: 50 })],
    ['gif', image(3).gif()],
    ['gif', image(4).gif({ colours: 4 })],
  ];
  return Promise.all(encodings.map(async ([variant, encoder]) => ({ variant, bytes: Uint8Array.from(await encoder.toBuffer()) })));
}

function mutateImage(format: ImageFormat, bytes: Uint8Array, random: Random): Uint8Array {
  const layout = imageLayouts[format](bytes);
  let out = Buffer.from(bytes);
  const chunk = layout.chunks.length ? random.pick(layout.chunks) : { start: 0, end: out.length, dataStart: 0, dataEnd: out.length };
  switch (random.int(7)) {
    case 0:
    case 1: {
      const field = layout.fields.length ? random.pick(layout.fields) : { offset: 0, width: 4 as const, littleEndian: true, values: undefined };
      const value = field.values && random.chance(0.6) ? random.pick(field.values) : boundaryInteger(random);
      if (field.offset + field.width <= out.length) writeInteger(out, field.offset, field.width, value, field.littleEndian);
      break;
    }
    case 2: {
      // The payload of one chunk damaged in place or resized.
      const data = mutateBytes(out.subarray(chunk.dataStart, chunk.dataEnd), random, 3);
      out = Buffer.concat([out.subarray(0, chunk.dataStart), data, out.subarray(chunk.dataEnd)]);
      break;
    }
    case 3:
      out = Buffer.concat([out.subarray(0, chunk.start), out.subarray(chunk.end)]);
      break;
    case 4: {
      const copies = Array.from({ length: random.size(6) + 1 }, () => out.subarray(chunk.start, chunk.end));
      out = Buffer.concat([out.subarray(0, chunk.end), ...copies, out.subarray(chunk.end)]);
      break;
    }
    case 5: {
      const at = random.chance(0.5) ? chunk.start : chunk.end;
      out = Buffer.concat([out.subarray(0, at), layout.foreignChunk(random), out.subarray(at)]);
      break;
    }
    default:
      out = Buffer.from(mutateBytes(out, random));
  }
  const repaired = random.chance(0.8) ? imageLayouts[format](out).repair(out) : out;
  return random.chance(0.1) ? mutateBytes(repaired, random, 2) : Uint8Array.from(repaired);
}

/** A data URL: its header (type, parameters, base64 flag), its payload encoding, and the image inside. */
function mutateDataUrl(text: string, random: Random): string {
  const [header, payload] = [text.slice(0, text.indexOf(',')), text.slice(text.indexOf(',') + 1)];
  switch (random.int(4)) {
    case 0:
      return `${random.pick(['data:', 'data:image/png', 'data:;base64', 'data:image/png;charset=utf-8;base64', 'data:base64', 'DATA:image/png;base64', 'data:image/png;base64;base64'])},${payload}`;
    case 1: {
      const image = Buffer.from(payload, 'base64');
      return `${header},${Buffer.from(mutateImage('png', image, random)).toString(random.chance(0.8) ? 'base64' : 'base64url')}`;
    }
    case 2:
      return `data:image/png,${random.pick(['%', '%ZZ', '%E0%A4%A', '%00', encodeURIComponent(Buffer.from(payload, 'base64').toString('latin1'))])}`;
    default:
      return mutateText(text, random, text.length + 4096);
  }
}

export const imagesTarget: Target = {
  name: 'images',
  description: 'PNG, JPEG, WebP and GIF files and data URLs, through preprocessImages (sharp, with its size limits)',
  async seeds(): Promise<Seed[]> {
    const encoded = await encodedSeeds();
    const png = encoded[0]!.bytes;
    return [...encoded, { variant: 'data-url', bytes: Buffer.from(`data:image/png;base64,${Buffer.from(png).toString('base64')}`) }];
  },
  mutate(seed, random) {
    if (seed.variant === 'data-url') return Buffer.from(mutateDataUrl(Buffer.from(seed.bytes).toString('latin1'), random), 'latin1');
    return mutateImage(seed.variant as ImageFormat, seed.bytes, random);
  },
  async run(variant, input, scratch) {
    if (variant === 'data-url') {
      await preprocessImages([Buffer.from(input).toString('latin1')], IMAGE_SIZE);
      return;
    }
    const path = join(scratch, `image.${variant}`);
    await writeFile(path, input);
    await preprocessImages([path], IMAGE_SIZE);
  },
};
