// The attribution file that ships with anything derived from the world (datasets, trained
// weights): every icon set used, its authors and licence, plus the label data and textures.
import type { Catalog } from './catalog.js';
import { packageVersion } from './iconify.js';

const SHARE_ALIKE = /-SA-/;
const ATTRIBUTION_REQUIRED = /^CC-BY/;

export interface AttributionOptions {
  /** Styles whose artwork the derivative contains (default: all catalog styles). */
  styles?: readonly string[];
  /** Whether GIMP patterns were used as backgrounds. */
  patterns?: boolean;
}

export function attributionMarkdown(catalog: Catalog, options: AttributionOptions = {}): string {
  const used = catalog.styles.filter((s) => !options.styles || options.styles.includes(s.id));
  const lines = [
    '# Attribution',
    '',
    'This material is derived from the emoji world of kosmos-g: emoji artwork from the icon sets',
    'below, rendered and composed into scenes. The artwork remains under its original licences.',
    '',
    '| style | package | artwork by | licence |',
    '|---|---|---|---|',
  ];
  for (const s of used) {
    lines.push(`| ${s.id} | \`${s.packageName}@${s.version}\` | [${s.author}](${s.authorUrl}) | [${s.license}](${s.licenseUrl}) |`);
  }
  lines.push('');
  const byLicence = used.filter((s) => ATTRIBUTION_REQUIRED.test(s.license));
  if (byLicence.length > 0) {
    lines.push(
      `Artwork under Creative Commons licences (${byLicence.map((s) => `${s.id}: ${s.license}`).join(', ')}) is`,
      'used with attribution as above; it has been rasterised, trimmed, resized and composited.',
      '',
    );
  }
  const shareAlike = used.filter((s) => SHARE_ALIKE.test(s.license));
  if (shareAlike.length > 0) {
    lines.push(
      `Share-alike: material containing ${shareAlike.map((s) => s.id).join(', ')} artwork must be distributed under the`,
      'same licence (CC BY-SA 4.0).',
      '',
    );
  }
  lines.push(
    `Emoji labels, tags and categories: \`emojibase-data@${packageVersion('emojibase-data')}\` (MIT, https://emojibase.dev).`,
  );
  if (options.patterns ?? true) {
    lines.push(
      '',
      'Background textures: GIMP patterns from the Debian packages gimp-data and gimp-data-extras',
      '(GPL-2.0-or-later / GPL-3.0-or-later, https://www.gimp.org).',
    );
  }
  return `${lines.join('\n')}\n`;
}
