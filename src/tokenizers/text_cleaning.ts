// Text cleaning before CLIP tokenisation. openai/CLIP runs ftfy.fix_text, then html.unescape
// twice, then whitespace collapsing and lower-casing; transformers' fast CLIPTokenizer only
// normalises to NFC, collapses whitespace and lower-cases. Both are provided. The ftfy part
// implements the repairs ftfy applies to prompts: UTF-8 mojibake read as Latin-1/Windows-1252,
// curly quotes, Latin ligatures, full-width characters, and NFC composition.
import { decodeHTML } from 'entities';

// Windows-1252 code points for bytes 0x80–0x9F (the rest of 0x80–0xFF is Latin-1).
const windows1252High = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';

function byteOfCharacter(character: string): number | null {
  const code = character.codePointAt(0)!;
  const highIndex = windows1252High.indexOf(character);
  if (highIndex >= 0) return 0x80 + highIndex;
  return code <= 0xff ? code : null;
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Re-decodes runs that are UTF-8 bytes mis-read as Windows-1252 ("cafÃ©" → "café"). A run is
 * only replaced when it is valid UTF-8 with at least one multi-byte sequence, so ordinary accented
 * text ("café") is left alone.
 */
function fixMojibake(text: string): string {
  return text.replace(/[\u0080-\u00ff€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]{2,}/gu, (run) => {
    const bytes = [...run].map(byteOfCharacter);
    if (bytes.some((byte) => byte === null) || !bytes.some((byte) => byte! >= 0xc2 && byte! <= 0xf4)) return run;
    try {
      return utf8Decoder.decode(Uint8Array.from(bytes as number[]));
    } catch {
      return run;
    }
  });
}

const curlyQuotes: Record<string, string> = { '‘': "'", '’': "'", '‚': "'", '‛': "'", '“': '"', '”': '"', '„': '"', '‟': '"' };

/** The ftfy.fix_text repairs that apply to prompts (see the file comment). */
export function fixText(text: string): string {
  let fixed = fixMojibake(text);
  fixed = fixed.replace(/[‘’‚‛“”„‟]/gu, (quote) => curlyQuotes[quote]!);
  // Latin ligatures (U+FB00–FB06) and full-width forms (U+FF01–FF5E) decompose under NFKC.
  fixed = fixed.replace(/[\ufb00-\ufb06\uff01-\uff5e]/gu, (character) => character.normalize('NFKC'));
  return fixed.normalize('NFC');
}

const collapseWhitespace = (text: string): string => text.replace(/\s+/gu, ' ').trim();

/** openai/CLIP: ftfy, HTML entities unescaped twice, whitespace collapsed, lower case. */
export function cleanForClip(text: string): string {
  return collapseWhitespace(decodeHTML(decodeHTML(fixText(text)))).toLowerCase();
}

/** transformers' CLIPTokenizer (tokenizers backend): NFC, whitespace collapsed, lower case. */
export function cleanBasic(text: string): string {
  return collapseWhitespace(text.normalize('NFC')).toLowerCase();
}
