// Kosmos-G's interleaved prompt: text with `<i>` placeholders, one per image, becomes the MLLM's
// token sequence (official `app_model.py: kosmosg_preprocess`):
//   [<s>] + Σ_i (tokens(text_i) + [<image>] × (Q + 1) + [</image>]) + tokens(tail)      (no </s>)
// Each text segment is encoded on its own, so " wearing " is one SentencePiece word. The image
// mask is true on the last Q of each image's Q + 1 `<image>` positions: the XConnector's Q vectors
// overwrite those embeddings, the first `<image>` keeps its own.
//
// Placeholder syntax: exactly the three characters `<i>` (case-sensitive). Anything else that
// looks similar — `<i`, `< i>`, `<I>`, `<image>` — is ordinary text and is tokenized as such,
// like the official demo, which splits on the literal string.
import type { KosmosTokenizer } from '../tokenizers/kosmos_tokenizer.js';

export const IMAGE_PLACEHOLDER = '<i>';

/** Where one image sits in the sequence (all positions 0-based, `end`s exclusive). */
export interface ImagePositions {
  /** The first of the Q + 1 `<image>` tokens (not replaced). */
  blockStart: number;
  /** The Q positions the image features overwrite: [featureStart, featureEnd). */
  featureStart: number;
  featureEnd: number;
  /** The `</image>` token (= featureEnd). */
  imageEnd: number;
}

export interface InterleavedPrompt {
  tokens: number[];
  /** tokens.length flags: true where an image feature replaces the token embedding. */
  imageMask: boolean[];
  /** One entry per image, in prompt order. */
  images: ImagePositions[];
}

/** The text segments around the placeholders: placeholders + 1 entries (empty ones included). */
export function splitPrompt(prompt: string): string[] {
  return prompt.split(IMAGE_PLACEHOLDER);
}

export function countPlaceholders(prompt: string): number {
  return splitPrompt(prompt).length - 1;
}

/** Throws the user-facing error when the placeholders and the images do not pair up. */
export function checkImageCount(prompt: string, imageCount: number): void {
  const placeholders = countPlaceholders(prompt);
  if (placeholders !== imageCount) {
    throw new Error(`the prompt has ${placeholders} ${IMAGE_PLACEHOLDER} placeholder${placeholders === 1 ? '' : 's'} but ${imageCount} image${imageCount === 1 ? ' was' : 's were'} given; they must match one to one`);
  }
}

/**
 * The token layout of `prompt` with `imageCount` images and `queries` (Q) vectors per image.
 * Throws when the number of `<i>` placeholders differs from `imageCount`.
 */
export function buildInterleavedPrompt(prompt: string, imageCount: number, tokenizer: KosmosTokenizer, queries: number): InterleavedPrompt {
  if (!Number.isInteger(queries) || queries < 1) throw new Error(`queries per image must be a positive integer, got ${queries}`);
  checkImageCount(prompt, imageCount);
  const segments = splitPrompt(prompt);
  const tokens = [tokenizer.bos];
  const imageMask = [false];
  const images: ImagePositions[] = [];
  const pushText = (text: string) => {
    for (const id of tokenizer.encodeSegment(text)) {
      tokens.push(id);
      imageMask.push(false);
    }
  };
  segments.forEach((text, index) => {
    pushText(text);
    if (index === segments.length - 1) return;
    const blockStart = tokens.length;
    for (let q = 0; q <= queries; q++) {
      tokens.push(tokenizer.imageStart);
      imageMask.push(q > 0);
    }
    tokens.push(tokenizer.imageEnd);
    imageMask.push(false);
    images.push({ blockStart, featureStart: blockStart + 1, featureEnd: blockStart + 1 + queries, imageEnd: blockStart + 1 + queries });
  });
  return { tokens, imageMask, images };
}

/** The unconditional sequence: `[<s>]`, or `[<s>] + tokens(negative prompt)` (official encode_condition). */
export function buildUnconditionalPrompt(tokenizer: KosmosTokenizer, negativePrompt = ''): number[] {
  // The unconditional branch has no images to pair with.
  if (countPlaceholders(negativePrompt) > 0) throw new Error(`the negative prompt cannot contain ${IMAGE_PLACEHOLDER} placeholders (it has no images)`);
  return [tokenizer.bos, ...tokenizer.encodeSegment(negativePrompt)];
}
