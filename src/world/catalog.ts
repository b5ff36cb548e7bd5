// The subject catalog: emoji concepts (from emojibase-data) joined with the Iconify vendor sets on
// code points, or on CLDR-style name slugs for sets that ship no chars.json. Each (concept, style)
// pair is one specific subject.
import { loadIconSet, normaliseCodepoints, packageVersion, readPackageJson, type IconSet, type IconSetInfo } from './iconify.js';
import { COLOUR_NAMES, GENERIC_PATTERN_PHRASE, PATTERN_PHRASES, POSITIONS, SCENE_PHRASES, SIZE_PHRASES, TEMPLATE_WORDS } from './vocabulary.js';

export interface StyleDefinition {
  id: string;
  packageName: string;
  /** The word captions use for the style. */
  word: string;
}

export const STYLE_DEFINITIONS: readonly StyleDefinition[] = [
  { id: 'noto', packageName: '@iconify-json/noto', word: 'noto' },
  { id: 'twemoji', packageName: '@iconify-json/twemoji', word: 'twemoji' },
  { id: 'fluent', packageName: '@iconify-json/fluent-emoji', word: 'fluent' },
  { id: 'emojione', packageName: '@iconify-json/emojione', word: 'emojione' },
  { id: 'noto-v1', packageName: '@iconify-json/noto-v1', word: 'android' },
  { id: 'fxemoji', packageName: '@iconify-json/fxemoji', word: 'firefox' },
  { id: 'streamline', packageName: '@iconify-json/streamline-emojis', word: 'streamline' },
  { id: 'openmoji', packageName: '@iconify-json/openmoji', word: 'openmoji' },
];

/** Held out of Kosmos-G stages 2 and 3: an outlined flat look no training style shares. */
export const HELD_OUT_STYLE = 'openmoji';

export interface Style extends StyleDefinition, IconSetInfo {}

export interface Concept {
  id: string;
  hexcode: string;
  emoji: string;
  label: string;
  tags: string[];
  category: string;
  subcategory: string;
  /** Words that name this concept in captions: the label first, then tags no other concept shares. */
  names: string[];
}

export interface Subject {
  /** `${style}:${concept}` */
  id: string;
  concept: string;
  style: string;
  /** Icon name inside the style's Iconify set. */
  icon: string;
}

/** Scene emoji used as cartoon backgrounds, with the phrase that places a subject in them. */
export interface SceneEmoji {
  id: string;
  hexcode: string;
  label: string;
  phrase: string;
  icons: Record<string, string>;
}

export interface Catalog {
  styles: Style[];
  concepts: Concept[];
  subjects: Subject[];
  scenes: SceneEmoji[];
  conceptById: Map<string, Concept>;
  subjectById: Map<string, Subject>;
  styleById: Map<string, Style>;
}

export interface CatalogOptions {
  /** Keep only these concept ids (tests and quick previews render a small subset). */
  concepts?: readonly string[];
  /** Keep only these style ids. */
  styles?: readonly string[];
}

// emojibase groups whose emoji are things that can stand in a scene.
const OBJECT_GROUPS = new Set(['animals-nature', 'food-drink', 'travel-places', 'activities', 'objects']);


interface EmojibaseEntry {
  label: string;
  hexcode: string;
  emoji: string;
  tags?: string[];
  group?: number;
  subgroup?: number;
}

interface EmojibaseMessages {
  groups: { key: string; order: number }[];
  subgroups: { key: string; order: number }[];
}

export function slugify(label: string): string {
  return label
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/['’.]/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

function reservedWords(styles: readonly StyleDefinition[]): Set<string> {
  const words = new Set<string>(TEMPLATE_WORDS);
  for (const style of styles) words.add(style.word);
  for (const position of POSITIONS) for (const w of position.split(' ')) words.add(w);
  for (const phrases of Object.values(SIZE_PHRASES)) for (const p of phrases) if (p) words.add(p);
  for (const colour of Object.keys(COLOUR_NAMES)) words.add(colour);
  const phrases = [...Object.values(SCENE_PHRASES), ...PATTERN_PHRASES.map(([, p]) => p), GENERIC_PATTERN_PHRASE];
  for (const phrase of phrases) for (const w of phrase.split(' ')) words.add(w);
  return words;
}

// Sets without chars.json are joined on names; try the CLDR slug and the names other sets give
// the same code point, then the spellings some vendors use (fxemoji squashes hyphens, streamline
// numbers variants).
function candidateNames(slugs: readonly string[]): string[] {
  const out: string[] = [];
  for (const slug of slugs) out.push(slug);
  for (const slug of slugs) out.push(slug.replace(/-/g, ''), `${slug}-1`);
  return [...new Set(out)];
}

// Where a vendor's names mean something else than the CLDR name: fxemoji calls the full-body
// animals "...side" and their faces by the bare name; streamline's "sunglasses" is a smiling face.
const NAME_OVERRIDES: Record<string, Record<string, string | null>> = {
  fxemoji: {
    cat: 'catside',
    'cat-face': 'cat',
    dog: 'dogside',
    'dog-face': 'dog',
    rabbit: 'bunnyside',
    'rabbit-face': 'bunny',
    mouse: 'mouseside',
    'mouse-face': 'mouse',
    pig: 'pigside',
    'pig-face': 'pig',
    tiger: 'tigerside',
    'tiger-face': 'tiger',
    leopard: 'leopardside',
    dragon: 'dragonside',
    'dragon-face': 'dragonhead',
  },
  streamline: { sunglasses: null },
};

function iconFor(set: IconSet, style: string, hex: string, slugs: readonly string[], claimed: Set<string>): string | null {
  const overrides = NAME_OVERRIDES[style];
  const slug = slugs[0] as string;
  if (overrides && slug in overrides) {
    const name = overrides[slug];
    return name && set.names.has(name) ? name : null;
  }
  if (set.chars.size > 0) {
    const name = set.chars.get(hex);
    return name && set.names.has(name) && !claimed.has(name) ? name : null;
  }
  for (const name of candidateNames(slugs)) if (set.names.has(name) && !claimed.has(name)) return name;
  return null;
}

export function buildCatalog(options: CatalogOptions = {}): Catalog {
  const styleDefinitions = STYLE_DEFINITIONS.filter((s) => !options.styles || options.styles.includes(s.id));
  if (options.styles) {
    for (const id of options.styles) {
      if (!STYLE_DEFINITIONS.some((s) => s.id === id)) {
        throw new Error(`unknown style '${id}'; known styles: ${STYLE_DEFINITIONS.map((s) => s.id).join(', ')}`);
      }
    }
  }
  emojibaseVersionCheck();
  const entries = readPackageJson<EmojibaseEntry[]>('emojibase-data', 'en/data.json');
  const messages = readPackageJson<EmojibaseMessages>('emojibase-data', 'en/messages.json');
  const groupKey = new Map(messages.groups.map((g) => [g.order, g.key]));
  const subgroupKey = new Map(messages.subgroups.map((g) => [g.order, g.key]));
  const sets = new Map(styleDefinitions.map((s) => [s.id, loadIconSet(s.packageName)]));
  // Code-point-keyed names from the sets that have them, used as extra slugs for the others.
  const namingSets = STYLE_DEFINITIONS.map((s) => loadIconSet(s.packageName)).filter((s) => s.chars.size > 0);

  const objectEntries = entries.filter((e) => e.group !== undefined && OBJECT_GROUPS.has(groupKey.get(e.group) ?? ''));
  const reserved = reservedWords(STYLE_DEFINITIONS);
  const labels = new Set(objectEntries.map((e) => e.label));
  const tagOwners = new Map<string, number>();
  for (const e of objectEntries) for (const t of new Set(e.tags ?? [])) tagOwners.set(t, (tagOwners.get(t) ?? 0) + 1);

  const claimed = new Map<string, Set<string>>(
    styleDefinitions.map((s) => [s.id, new Set(Object.values(NAME_OVERRIDES[s.id] ?? {}).filter((n): n is string => n !== null))]),
  );
  const concepts: Concept[] = [];
  const subjects: Subject[] = [];
  const scenes: SceneEmoji[] = [];
  const wanted = options.concepts ? new Set(options.concepts) : null;
  const joined = objectEntries.map((e) => {
    const hex = normaliseCodepoints(e.hexcode);
    const slugs = [slugify(e.label), ...namingSets.map((s) => s.chars.get(hex)).filter((n): n is string => Boolean(n))];
    const icons: Record<string, string> = {};
    for (const style of styleDefinitions) {
      const set = sets.get(style.id) as IconSet;
      const owned = claimed.get(style.id) as Set<string>;
      const name = iconFor(set, style.id, hex, [...new Set(slugs)], owned);
      if (name) {
        icons[style.id] = name;
        owned.add(name);
      }
    }
    return { entry: e, icons };
  });

  for (const { entry, icons } of joined) {
    const id = slugify(entry.label);
    const scenePhrase = SCENE_PHRASES[entry.label];
    if (scenePhrase) {
      scenes.push({ id, hexcode: entry.hexcode, label: entry.label, phrase: scenePhrase, icons });
      continue;
    }
    if (wanted && !wanted.has(id)) continue;
    if (Object.keys(icons).length === 0) continue;
    const words = entry.label.split(/\s+/);
    const label = entry.label.replace(/’/g, "'");
    const names = [label];
    for (const tag of entry.tags ?? []) {
      if (tag.length < 3 || tag === entry.label || reserved.has(tag) || labels.has(tag)) continue;
      if ((tagOwners.get(tag) ?? 0) !== 1 || !isNameLike(tag, words)) continue;
      names.push(tag);
    }
    concepts.push({
      id,
      hexcode: entry.hexcode,
      emoji: entry.emoji,
      label,
      tags: entry.tags ?? [],
      category: groupKey.get(entry.group as number) ?? '',
      subcategory: subgroupKey.get(entry.subgroup as number) ?? '',
      names,
    });
    for (const [style, icon] of Object.entries(icons)) subjects.push({ id: `${style}:${id}`, concept: id, style, icon });
  }
  if (wanted) {
    const missing = [...wanted].filter((id) => !concepts.some((c) => c.id === id));
    if (missing.length > 0) throw new Error(`unknown or unrenderable concept ids: ${missing.join(', ')}`);
  }
  const styles: Style[] = styleDefinitions.map((s) => ({ ...s, ...(sets.get(s.id) as IconSet).info }));
  return {
    styles,
    concepts,
    subjects,
    scenes,
    conceptById: new Map(concepts.map((c) => [c.id, c])),
    subjectById: new Map(subjects.map((s) => [s.id, s])),
    styleById: new Map(styles.map((s) => [s.id, s])),
  };
}

// Tags are a mix of nouns, adjectives and plurals ("formal", "cats"); only noun-like singular
// words read well where a caption names one subject.
function isNameLike(tag: string, labelWords: readonly string[]): boolean {
  if (/^[a-z][a-z ]*[a-z]$/.test(tag) === false) return false;
  if (/(al|ful|ous|ive|ic|ing|ed|ly)$/.test(tag)) return false;
  if (tag.endsWith('s') && labelWords.some((w) => tag === `${w}s` || tag === `${w}es`)) return false;
  return !tag.endsWith('s') || tag.endsWith('ss');
}

function emojibaseVersionCheck(): void {
  const version = packageVersion('emojibase-data');
  if (version.split('.')[0] !== '17') {
    throw new Error(`emojibase-data ${version} is installed; the world's labels are defined against 17.x (npm install emojibase-data@17.0.0)`);
  }
}

export function subjectsOfConcept(catalog: Catalog, concept: string): Subject[] {
  return catalog.subjects.filter((s) => s.concept === concept);
}
