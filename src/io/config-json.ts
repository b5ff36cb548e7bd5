// Reading reference config.json files. Python's json module writes NaN, Infinity and -Infinity
// as bare tokens (diffusers scheduler configs contain `"lambda_min_clipped": -Infinity`), which
// JSON.parse rejects; they are read here as the matching JavaScript numbers.
import { platform } from '#platform';
import { oneLine } from './describe-value.js';

const sentinel = '\u0000python-float:';

export function parsePythonJson(text: string, source = 'JSON'): unknown {
  const tokens = /"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g;
  const quoted = text.replace(tokens, (match) => (match.startsWith('"') ? match : JSON.stringify(sentinel + match)));
  try {
    return JSON.parse(quoted, (_, value: unknown) => (typeof value === 'string' && value.startsWith(sentinel) ? Number(value.slice(sentinel.length)) : value));
  } catch (error) {
    throw new Error(`${source}: invalid JSON (${oneLine((error as Error).message)})`);
  }
}

export async function readConfigJson(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await platform.readText(path);
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const parsed = parsePythonJson(text, path);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${path}: expected a JSON object`);
  return parsed as Record<string, unknown>;
}
