// The embedded default model: `models/kosmos-g-mini` of this package, found from this module's own
// location (dist/src/pipeline/ → the package root), so the CLI and the library reach it from any
// working directory and from an installed package alike.
import { fileURLToPath } from 'node:url';

export const DEFAULT_MODEL = fileURLToPath(new URL('../../../models/kosmos-g-mini', import.meta.url));
