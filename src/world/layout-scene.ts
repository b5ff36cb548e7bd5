// Layout scenes a user describes instead of drawing a control map: one to three subjects, each a
// concept in a style at a named position and size, the words of the world's own scenes. Each
// subject sits exactly at its position's centre (the world's scenes jitter it; a description says
// where, not roughly where), drawn in the order given, later ones in front. The layout map of the
// rendered scene is what a layout ControlNet (`train controlnet`, control 'layout') trained on.
import { z } from 'zod';
import { layoutMap } from '../pipeline/control-maps.js';
import type { BackgroundSpec } from './backgrounds.js';
import { placeSubject, renderScene, type SceneSpec } from './scene.js';
import { POSITIONS, SIZES } from './vocabulary.js';
import type { World } from './world.js';

const choices = (words: readonly string[]) => words.join(', ');

/** The description's shape; the world's concepts and styles are checked by parseLayoutScene. */
export const layoutSceneSchema = z.strictObject({
  subjects: z
    .array(
      z.strictObject({
        concept: z.string().describe('a concept id of the world, e.g. "cat"'),
        style: z.string().describe('a style that draws the concept, e.g. "noto"'),
        position: z.enum(POSITIONS, { error: (issue) => `position must be one of ${choices(POSITIONS)}, got ${JSON.stringify(issue.input)}` }),
        size: z.enum(SIZES, { error: (issue) => `size must be one of ${choices(SIZES)}, got ${JSON.stringify(issue.input)}` }).default('medium'),
      }),
    )
    .min(1, 'a layout scene has 1 to 3 subjects')
    .max(3, 'a layout scene has 1 to 3 subjects'),
});

export type LayoutScene = z.output<typeof layoutSceneSchema>;

/**
 * A description checked against the world and normalised (size filled in): every subject a
 * concept and style the world has, each concept and each position at most once, as in the world's
 * scenes. Throws a one-line error naming the subject and listing the choices.
 */
export function parseLayoutScene(world: World, value: unknown): LayoutScene {
  const parsed = layoutSceneSchema.safeParse(value);
  if (!parsed.success) throw new Error(parsed.error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : 'scene'}: ${issue.message}`).join('; '));
  const { catalog } = world;
  parsed.data.subjects.forEach(({ concept, style, position }, index) => {
    const name = `subject ${index + 1}`;
    if (!catalog.conceptById.has(concept)) throw new Error(`${name}: unknown concept ${JSON.stringify(concept)} (this world has ${choices(catalog.concepts.map((c) => c.id).sort())})`);
    if (!catalog.subjectById.has(`${style}:${concept}`)) {
      const styles = catalog.subjects.filter((subject) => subject.concept === concept).map((subject) => subject.style);
      throw new Error(`${name}: no ${concept} in style ${JSON.stringify(style)} (${concept} comes in ${choices(styles)})`);
    }
    const earlier = parsed.data.subjects.slice(0, index);
    const sameConcept = earlier.findIndex((other) => other.concept === concept);
    if (sameConcept >= 0) throw new Error(`${name}: ${concept} is subject ${sameConcept + 1} already; a scene has each concept once`);
    const samePosition = earlier.findIndex((other) => other.position === position);
    if (samePosition >= 0) throw new Error(`${name}: subject ${samePosition + 1} is at ${position} already; a scene has each position once`);
  });
  return parsed.data;
}

/** The background under a layout scene: the map is black wherever no subject is, whatever is drawn there. */
const LAYOUT_BACKGROUND: BackgroundSpec = { kind: 'gradient', top: 'black', bottom: 'black' };

/** The scene a description stands for, at the world's scene size, no subject jittered. */
export function layoutSceneSpec(world: World, scene: LayoutScene): SceneSpec {
  const canvas = world.sceneSize;
  const subjects = scene.subjects.map(({ concept, style, position, size }) => placeSubject(world, canvas, `${style}:${concept}`, position, size, null));
  return { size: canvas, background: LAYOUT_BACKGROUND, subjects };
}

/** The layout map of a (parsed) description: square, the world's scene size, interleaved RGB. */
export function layoutSceneMap(world: World, scene: LayoutScene): { width: number; height: number; rgb: Uint8Array } {
  const spec = layoutSceneSpec(world, scene);
  return { width: spec.size, height: spec.size, rgb: layoutMap(renderScene(world, spec)) };
}
