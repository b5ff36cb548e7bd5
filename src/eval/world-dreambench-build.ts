// `data build --kind dreambench`: a world DreamBench, the DreamBench layout (dreambench-data.ts)
// filled from the emoji world, plus the world files world-dreambench.ts reads. Subjects are
// held-out-style (OpenMoji) subjects of the given world's concepts — the concepts the decoder was
// trained on, so it can draw them — with the held-out concepts among them always included; each has
// 4–6 reference images, the subject alone at different sizes and positions on plain backgrounds
// (image 00, the Kosmos-G reference, shows it large in the centre on white, as DreamBench's
// references show the subject whole), and its concept's name as the class word. Animals are `live`,
// the rest objects, as DreamBench's pets are.
//
// The 25 prompts are the world's caption phrases, laid out as DreamBench lays out its lists: the
// first 10 (scene-emoji backgrounds) and the last 5 (positions and sizes) are shared, the middle 10
// differ (man-made textures for objects, natural surfaces for live subjects). Every prompt also gets
// its true scene, rendered with the subject: the world oracle; and that scene's layout map, the
// input of a layout ControlNet and the masks the placement measure checks.
//
// Everything is a pure function of the seed and the world; the scenes come from seeds derived from
// EVAL_SCENE_SEED, which no training stream may use. The folder is written beside --out and renamed
// into place, so --out is either absent, the old folder or the complete new one.
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { layoutMap } from '../pipeline/control-maps.js';
import { subjectCaption, WORLD_FILE, type WorldDescription } from '../train/captioned-scenes.js';
import { EVAL_SCENE_SEED } from '../train/world-data.js';
import { deriveSeed, hashString, Random } from '../util/random.js';
import { attributionMarkdown } from '../world/attribution.js';
import { PATTERN_ZOOMS, type BackgroundSpec } from '../world/backgrounds.js';
import { styleWord } from '../world/caption.js';
import { HELD_OUT_STYLE, type Subject } from '../world/catalog.js';
import { applyEdit } from '../world/edits.js';
import { encodePng } from '../world/image.js';
import { DEFAULT_MAX_OVERLAP, placeSubject, renderScene, tryPlaceNew, type SceneSpec } from '../world/scene.js';
import { makeSplits, splitPool } from '../world/splits.js';
import { POSITION_PHRASES, POSITIONS, SIZE_PHRASES, SIZES, type Position, type SizeWord } from '../world/vocabulary.js';
import type { World } from '../world/world.js';
import { IMAGE_PLACEHOLDER, type PromptKind, withoutUniqueToken } from './dreambench-data.js';
import { EDITS_FILE, MULTI_FILE, WORLD_DREAMBENCH_FILE, WORLD_DREAMBENCH_FORMAT, type EditItem, type MultiItem, type WorldDreamBenchFile, type WorldPromptWords } from './world-dreambench.js';

export const DEFAULT_WORLD_DREAMBENCH = { subjects: 30, multi: 30, edits: 30 } as const;

const words = (background: string | null, position: Position | null = null, size: SizeWord | null = null): WorldPromptWords => ({ background, position, size });
const SHARED_BACKGROUNDS = ['in the snowy mountains', 'on a beach', 'in the desert', 'in the city', 'at night under the stars', 'at sunset', 'in a national park', 'on a desert island', 'at a campsite', 'in foggy weather'];
const OBJECT_BACKGROUNDS = ['on wooden boards', 'on marble', 'on tiles', 'in front of bricks', 'on fabric', 'on metal', 'on paper', 'on stones', 'on gold', 'on cork'];
const LIVE_BACKGROUNDS = ['on leaves', 'on sand', 'on water', 'in the sky', 'on tree bark', 'on dry ground', 'in the waves', 'under the milky way', 'on an icy surface', 'in a canyon'];
const SHARED_LAYOUTS = [words(null, 'top left'), words(null, 'top right'), words(null, 'bottom left'), words(null, 'bottom right', 'small'), words(null, 'centre', 'large')];

/** What each of the 25 prompts of a list asks for. */
export const WORLD_PROMPTS: Record<PromptKind, readonly WorldPromptWords[]> = {
  object: [...SHARED_BACKGROUNDS.map((phrase) => words(phrase)), ...OBJECT_BACKGROUNDS.map((phrase) => words(phrase)), ...SHARED_LAYOUTS],
  live: [...SHARED_BACKGROUNDS.map((phrase) => words(phrase)), ...LIVE_BACKGROUNDS.map((phrase) => words(phrase)), ...SHARED_LAYOUTS],
};

/** Every background the prompts name: the candidates of the background measure, and the edits' before and after. */
const PROMPT_BACKGROUNDS = [...new Set([...WORLD_PROMPTS.object, ...WORLD_PROMPTS.live].flatMap((prompt) => (prompt.background === null ? [] : [prompt.background])))];

/** Plain reference backgrounds after the white of image 00: light colours, so OpenMoji's black outlines stay visible. */
const REFERENCE_COLOURS = ['beige', 'grey', 'yellow', 'pink', 'teal'];
/** The true scene of a prompt that names no background. */
const PLAIN_WHITE: BackgroundSpec = { kind: 'gradient', top: 'white', bottom: 'white' };

/**
 * prompts.json's form ("a {0} {1} in the desert", "a small {0} {1} at the bottom right") and the
 * Kosmos-G input in the official drop-object form ("{} in the desert"), the size word kept before
 * the image as the world's compose samples keep it ("a small {} at the bottom right").
 */
export function promptTemplates(prompt: WorldPromptWords): { dreambooth: string; input: string } {
  const tail = [prompt.position && POSITION_PHRASES[prompt.position][0], prompt.background].filter(Boolean).join(', ');
  const size = prompt.size ? SIZE_PHRASES[prompt.size][0] : '';
  return { dreambooth: `a ${size ? `${size} ` : ''}{0} {1} ${tail}`, input: `${size ? `a ${size} ` : ''}{} ${tail}` };
}

export interface WorldDreamBenchOptions {
  out: string;
  /** Default 0. */
  seed?: number;
  /** Subjects (default 30), multi prompts and edits (30 each). */
  subjects?: number;
  multi?: number;
  edits?: number;
  /** Split seed of the held-out concepts (default 0). */
  splitSeed?: number;
  /** Replace an existing --out that holds a world DreamBench (or nothing). */
  force?: boolean;
  report?: (message: string) => void;
}

export interface WorldDreamBenchSummary {
  out: string;
  subjects: string[];
  images: number;
  multi: number;
  edits: number;
}

/** A folder --force may replace: empty, or an earlier world DreamBench. */
async function checkOut(out: string, force: boolean): Promise<void> {
  const entry = await stat(out).catch(() => null);
  if (!entry) return;
  if (!force) throw new Error(`--out ${out} already exists; pass --force to replace it`);
  const entries = entry.isDirectory() ? await readdir(out) : null;
  if (!entries || (entries.length && !entries.includes(WORLD_DREAMBENCH_FILE))) throw new Error(`--out ${out} is not a world DreamBench (no ${WORLD_DREAMBENCH_FILE}); --force replaces only one of those`);
}

const isLive = (world: World, concept: string) => {
  const info = world.catalog.conceptById.get(concept)!;
  return info.category === 'animals-nature' && info.subcategory.startsWith('animal-');
};

class Builder {
  private readonly patternsByPhrase = new Map<string, string[]>();
  /** The held-out pool's scene-emoji styles: every style. */
  readonly backgroundStyles: string[];
  /** Styles and textures drawn, for ATTRIBUTION.md. */
  readonly drawnStyles = new Set<string>();
  drewPatterns = false;

  constructor(readonly world: World, splitSeed: number, readonly base: number) {
    this.backgroundStyles = splitPool(world.catalog, makeSplits(world.catalog, splitSeed), 'heldout').backgroundStyles;
    for (const pattern of world.backgrounds.patterns()) {
      const phrase = world.backgrounds.phrase({ kind: 'pattern', pattern: pattern.id, zoom: 1, dx: 0, dy: 0 });
      this.patternsByPhrase.set(phrase, [...(this.patternsByPhrase.get(phrase) ?? []), pattern.id]);
    }
    const unknown = PROMPT_BACKGROUNDS.filter((phrase) => !this.drawable(phrase));
    if (unknown.length) throw new Error(`the world cannot draw the backgrounds ${unknown.join(', ')} (no scene emoji in these styles, or no GIMP pattern with that phrase: are gimp-data and gimp-data-extras installed?)`);
  }

  /** An independent generator for item `index` of stream `stream` (references, scenes, multi, edits). */
  rng(stream: number, index: number): Random {
    return new Random(deriveSeed(deriveSeed(this.base, stream), index));
  }

  private drawable(phrase: string): boolean {
    const scene = this.world.catalog.scenes.find((candidate) => candidate.phrase === phrase);
    return scene ? this.world.backgrounds.sceneStyles(scene.id, this.backgroundStyles).length > 0 : (this.patternsByPhrase.get(phrase)?.length ?? 0) > 0;
  }

  /** A background the phrase describes: its scene emoji in a drawn style, or one of its textures at a drawn zoom and offset. */
  background(phrase: string, rng: Random): BackgroundSpec {
    const scene = this.world.catalog.scenes.find((candidate) => candidate.phrase === phrase);
    if (scene) return { kind: 'scene', scene: scene.id, style: rng.pick(this.world.backgrounds.sceneStyles(scene.id, this.backgroundStyles)) };
    return { kind: 'pattern', pattern: rng.pick(this.patternsByPhrase.get(phrase)!), zoom: rng.pick(PATTERN_ZOOMS), dx: rng.int(8) / 8, dy: rng.int(8) / 8 };
  }

  /** One scene of the subject as a prompt describes it; what the prompt leaves open is drawn. */
  scene(subject: string, prompt: WorldPromptWords, rng: Random): SceneSpec {
    const size = this.world.sceneSize;
    const background = prompt.background === null ? PLAIN_WHITE : this.background(prompt.background, rng);
    return { size, background, subjects: [placeSubject(this.world, size, subject, prompt.position ?? rng.pick(POSITIONS), prompt.size ?? rng.pick(SIZES), rng)] };
  }

  /** The 4–6 reference images: large in the centre on white, then other layouts on other plain colours. */
  references(subject: string, rng: Random): SceneSpec[] {
    const layouts = rng.shuffle(POSITIONS.flatMap((position) => SIZES.map((size) => [position, size] as const)).filter(([position, size]) => position !== 'centre' || size !== 'large'));
    const colours = rng.shuffle([...REFERENCE_COLOURS]);
    const all = [['centre', 'large', 'white'] as const, ...colours.map((colour, k) => [...layouts[k]!, colour] as const)].slice(0, 4 + rng.int(3));
    return all.map(([position, size, colour]): SceneSpec => ({ size: this.world.sceneSize, background: { kind: 'gradient', top: colour, bottom: colour }, subjects: [placeSubject(this.world, this.world.sceneSize, subject, position, size, rng)] }));
  }

  /** The two subjects at free positions of one background; null when they do not fit (the caller draws again). */
  pairScene(subjects: readonly [string, string], phrase: string, rng: Random): SceneSpec | null {
    const first = tryPlaceNew(this.world, this.world.sceneSize, subjects[0], [], rng, DEFAULT_MAX_OVERLAP);
    const second = first && tryPlaceNew(this.world, this.world.sceneSize, subjects[1], [first], rng, DEFAULT_MAX_OVERLAP);
    return first && second ? { size: this.world.sceneSize, background: this.background(phrase, rng), subjects: [first, second] } : null;
  }

  async png(spec: SceneSpec): Promise<Buffer> {
    for (const placed of spec.subjects) this.drawnStyles.add(placed.style);
    if (spec.background.kind === 'scene') this.drawnStyles.add(spec.background.style);
    if (spec.background.kind === 'pattern') this.drewPatterns = true;
    return encodePng(renderScene(this.world, spec).image);
  }

  /** The scene's layout map (a layout ControlNet's input, control-maps.ts), as an opaque RGB PNG. */
  async layoutPng(spec: SceneSpec): Promise<Buffer> {
    const rgb = layoutMap(renderScene(this.world, spec));
    const rgba = new Uint8Array((rgb.length / 3) * 4).fill(255);
    for (let p = 0; p < rgb.length / 3; p++) rgba.set(rgb.subarray(p * 3, p * 3 + 3), p * 4);
    return encodePng({ width: spec.size, height: spec.size, data: rgba });
  }
}

/** The held-out concepts first (all of them when they fit), then a seeded draw of the others; sorted by name as DreamBench is. */
function chooseSubjects(world: World, splitSeed: number, wanted: number, rng: Random): Subject[] {
  const manifest = makeSplits(world.catalog, splitSeed);
  const pool = splitPool(world.catalog, manifest, 'heldout').subjects.map((id) => world.catalog.subjectById.get(id)!).filter((subject) => subject.style === HELD_OUT_STYLE);
  if (wanted > pool.length) throw new Error(`the world has ${pool.length} ${HELD_OUT_STYLE} subjects, fewer than the ${wanted} asked for`);
  const heldOut = pool.filter((subject) => manifest.heldOutConcepts.includes(subject.concept));
  const others = pool.filter((subject) => !manifest.heldOutConcepts.includes(subject.concept));
  return [...rng.shuffle(heldOut), ...rng.shuffle(others)].slice(0, wanted).sort((a, b) => a.concept.localeCompare(b.concept));
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
const layoutOf = (spec: SceneSpec) => spec.subjects.map(({ subject, position, size }) => ({ subject, position, size }));
const tag = (n: number) => String(n).padStart(2, '0');

function countAtLeast(value: number, what: string, minimum: number): void {
  if (!Number.isSafeInteger(value) || value < minimum) throw new Error(`${what} must be an integer ≥ ${minimum}, got ${value}`);
}

/** Writes a world DreamBench of `world` into `options.out`. */
export async function buildWorldDreamBench(world: World, options: WorldDreamBenchOptions): Promise<WorldDreamBenchSummary> {
  const report = options.report ?? (() => {});
  const { out } = options;
  const seed = options.seed ?? 0;
  const splitSeed = options.splitSeed ?? 0;
  const counts = { subjects: options.subjects ?? DEFAULT_WORLD_DREAMBENCH.subjects, multi: options.multi ?? DEFAULT_WORLD_DREAMBENCH.multi, edits: options.edits ?? DEFAULT_WORLD_DREAMBENCH.edits };
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`seed must be a non-negative integer, got ${seed}`);
  countAtLeast(counts.subjects, 'the number of subjects', 2); // a two-subject prompt needs two
  countAtLeast(counts.multi, 'the number of two-subject prompts', 0);
  countAtLeast(counts.edits, 'the number of edits', 0);
  await checkOut(out, options.force ?? false);

  const builder = new Builder(world, splitSeed, deriveSeed(EVAL_SCENE_SEED ^ 0xd8e4, seed));
  const subjects = chooseSubjects(world, splitSeed, counts.subjects, builder.rng(0, 0));
  const name = (subject: Subject) => subject.concept;
  const temporary = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  await rm(temporary, { recursive: true, force: true });
  try {
    const write = async (path: string, data: string | Buffer) => {
      await mkdir(dirname(join(temporary, path)), { recursive: true });
      await writeFile(join(temporary, path), data);
    };
    report(`rendering ${subjects.length} subjects' references and true scenes`);
    const subjectsJson = [];
    const worldSubjects: WorldDreamBenchFile['subjects'] = {};
    let images = 0;
    for (const subject of subjects) {
      const live = isLive(world, subject.concept);
      // Seeded by the subject's id, so a subject's images do not depend on which others were chosen.
      const references = builder.references(subject.id, builder.rng(1, hashString(subject.id)));
      const files = references.map((_, k) => `images/${name(subject)}/${tag(k)}.png`);
      for (const [k, spec] of references.entries()) await write(files[k]!, await builder.png(spec));
      const scenes = WORLD_PROMPTS[live ? 'live' : 'object'].map((prompt, p) => builder.scene(subject.id, prompt, builder.rng(2, hashString(`${subject.id}/${p}`))));
      const sceneFiles = scenes.map((_, p) => `scenes/${name(subject)}/${tag(p)}.png`);
      for (const [p, spec] of scenes.entries()) await write(sceneFiles[p]!, await builder.png(spec));
      const layoutFiles = scenes.map((_, p) => `layouts/${name(subject)}/${tag(p)}.png`);
      for (const [p, spec] of scenes.entries()) await write(layoutFiles[p]!, await builder.layoutPng(spec));
      images += files.length;
      subjectsJson.push({ subject: name(subject), class: world.catalog.conceptById.get(subject.concept)!.names[0]!, live, images: files });
      const stylePrompts = Object.fromEntries(world.catalog.subjects.filter((other) => other.concept === subject.concept).map((other) => [other.style, subjectCaption(world, subject.concept, other.style)]));
      worldSubjects[name(subject)] = { world_subject: subject.id, concept: subject.concept, style: subject.style, style_word: styleWord(world, subject.style), style_prompts: stylePrompts, scenes: sceneFiles, layouts: layoutFiles };
    }

    report(`rendering ${counts.multi} two-subject prompts and ${counts.edits} edits`);
    const multi: MultiItem[] = [];
    for (let n = 0; n < counts.multi; n++) {
      const rng = builder.rng(3, n);
      const first = subjects[n % subjects.length]!;
      const pair = [first.id, rng.pick(subjects.filter((other) => other !== first)).id] as const;
      const phrase = rng.pick(SHARED_BACKGROUNDS);
      let spec: SceneSpec | null = null;
      for (let attempt = 0; attempt < 20 && !spec; attempt++) spec = builder.pairScene(pair, phrase, rng);
      if (!spec) throw new Error(`could not place ${pair.join(' and ')} together in a ${world.sceneSize}-pixel scene`);
      const scene = `multi/${tag(n)}.png`;
      await write(scene, await builder.png(spec));
      const layoutFile = `multi/${tag(n)}-layout.png`;
      await write(layoutFile, await builder.layoutPng(spec));
      const names = pair.map((id) => world.catalog.subjectById.get(id)!.concept) as [string, string];
      multi.push({ prompt: `${IMAGE_PLACEHOLDER} and ${IMAGE_PLACEHOLDER} ${phrase}`, subjects: names, text_prompt: `{} and {} ${phrase}`, clip_t_prompt: `a {} and a {} ${phrase}`, background: phrase, scene, layout: layoutOf(spec), layout_map: layoutFile });
    }
    const edits: EditItem[] = [];
    for (let n = 0; n < counts.edits; n++) {
      const rng = builder.rng(4, n);
      const subject = subjects[n % subjects.length]!;
      // Background edits whose before and after the background measure can both name.
      for (let attempt = 0; attempt < 200 && edits.length === n; attempt++) {
        const sourceBackground = rng.pick(PROMPT_BACKGROUNDS);
        const before = builder.scene(subject.id, words(sourceBackground), rng);
        const edit = applyEdit(world, before, 'background', rng, { subjects: [subject.id], backgroundStyles: builder.backgroundStyles, maxOverlap: DEFAULT_MAX_OVERLAP });
        const background = edit && world.backgrounds.phrase(edit.after.background);
        if (!edit || !background || !PROMPT_BACKGROUNDS.includes(background) || background === sourceBackground) continue;
        const [source, target] = [`edits/${tag(n)}-source.png`, `edits/${tag(n)}-target.png`];
        await write(source, await builder.png(edit.before));
        await write(target, await builder.png(edit.after));
        const layoutFile = `edits/${tag(n)}-layout.png`;
        await write(layoutFile, await builder.layoutPng(edit.after));
        edits.push({
          kind: 'background', subject: name(subject), source, source_background: sourceBackground, instruction: edit.instruction, prompt: `${IMAGE_PLACEHOLDER} ${edit.instruction}`,
          text_prompt: `{} ${background}`, clip_t_prompt: `a {} ${background}`, background, target, layout: layoutOf(edit.after), layout_map: layoutFile,
        });
      }
      if (edits.length === n) throw new Error(`found no background edit of ${subject.id} between two named backgrounds`);
    }

    // Sorted, as a model folder's world.json lists them.
    const concepts = world.catalog.concepts.map((concept) => concept.id).sort();
    const description: WorldDescription = { sceneSize: world.sceneSize, concepts, splits: ['heldout'], splitSeed };
    const templates = { object: WORLD_PROMPTS.object.map(promptTemplates), live: WORLD_PROMPTS.live.map(promptTemplates) };
    const lists = <K extends 'dreambooth' | 'input'>(key: K) => ({ object: templates.object.map((t) => t[key]), live: templates.live.map((t) => t[key]) });
    const dreambooth = lists('dreambooth');
    await write('subjects.json', json(subjectsJson));
    await write('prompts.json', json(dreambooth));
    await write('kosmosg_eval.json', json({
      source: `kosmos-g data build --kind dreambench --seed ${seed}: a world DreamBench (docs/world/dreambench.md)`,
      reference_image: Object.fromEntries(subjectsJson.map((subject) => [subject.subject, subject.images[0]])),
      input_placeholder: IMAGE_PLACEHOLDER,
      drop_object: true,
      input_prompts: lists('input'),
      clip_t_prompts: { object: dreambooth.object.map(withoutUniqueToken), live: dreambooth.live.map(withoutUniqueToken) },
      images_per_prompt: 4,
      // world-sd-mini's measured best guidance (its model card); 25 steps as the issue's time budget assumes.
      sampling: { scheduler: 'dpm++', num_inference_steps: 25, guidance_scale: 3, negative_prompt: '', seed: 0, resolution: world.sceneSize },
    }));
    await write(WORLD_FILE, json(description));
    const worldFile: WorldDreamBenchFile = {
      format: WORLD_DREAMBENCH_FORMAT, version: 1, seed, world: { ...description },
      concepts: Object.fromEntries(concepts.map((id) => [id, { name: world.catalog.conceptById.get(id)!.names[0]!, prompt: subjectCaption(world, id) }])),
      subjects: worldSubjects,
      prompts: { object: [...WORLD_PROMPTS.object], live: [...WORLD_PROMPTS.live] },
      background_phrases: PROMPT_BACKGROUNDS,
    };
    await write(WORLD_DREAMBENCH_FILE, json(worldFile));
    await write(MULTI_FILE, json(multi));
    await write(EDITS_FILE, json(edits));
    await write('ATTRIBUTION.md', attributionMarkdown(world.catalog, { styles: [...builder.drawnStyles], patterns: builder.drewPatterns }));

    // The existing folder (checked again: it may have appeared meanwhile) is moved aside before the new one takes its name.
    await checkOut(out, options.force ?? false);
    const previous = join(dirname(out), `.${basename(out)}.${process.pid}.old`);
    const replaced = await stat(out).then(() => true, () => false);
    if (replaced) await rename(out, previous);
    await rename(temporary, out);
    if (replaced) await rm(previous, { recursive: true, force: true });
    return { out, subjects: subjectsJson.map((subject) => subject.subject), images, multi: multi.length, edits: edits.length };
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  }
}
