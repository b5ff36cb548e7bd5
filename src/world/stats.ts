// Summary statistics of a shard folder: sizes, kinds, coverage of styles and concepts, and the
// rates the loader rules fix (entity-word drop, masked crops).
import { readRecords, readShardManifest } from './shards.js';

export interface DatasetStats {
  samples: number;
  kind: string;
  split: string;
  byKind: Record<string, number>;
  byEdit: Record<string, number>;
  inputImages: number;
  meanTextWords: number;
  subjectsPerSample: number;
  distinctSubjects: number;
  distinctConcepts: number;
  byStyle: Record<string, number>;
  slots: number;
  entityWordDropRate: number | null;
  maskedCropRate: number | null;
  backgroundKinds: Record<string, number>;
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

export async function datasetStats(dir: string): Promise<DatasetStats> {
  const manifest = readShardManifest(dir);
  const byKind: Record<string, number> = {};
  const byEdit: Record<string, number> = {};
  const byStyle: Record<string, number> = {};
  const backgroundKinds: Record<string, number> = {};
  const subjects = new Set<string>();
  const concepts = new Set<string>();
  let samples = 0, inputImages = 0, words = 0, mentions = 0, slots = 0, dropped = 0, masked = 0;
  for await (const record of readRecords(dir)) {
    samples++;
    bump(byKind, record.kind);
    if (record.edit) bump(byEdit, record.edit);
    inputImages += record.images.length;
    words += record.text.split(/\s+/).filter(Boolean).length;
    for (const id of record.subjects) {
      mentions++;
      subjects.add(id);
      const [style, concept] = id.split(':') as [string, string];
      concepts.add(concept);
      bump(byStyle, style);
    }
    for (const background of record.backgrounds) bump(backgroundKinds, background.kind);
    for (const slot of record.slots ?? []) {
      slots++;
      if (slot.dropped) dropped++;
      if (slot.masked) masked++;
    }
  }
  return {
    samples,
    kind: manifest.kind,
    split: manifest.split,
    byKind,
    byEdit,
    inputImages,
    meanTextWords: samples ? words / samples : 0,
    subjectsPerSample: samples ? mentions / samples : 0,
    distinctSubjects: subjects.size,
    distinctConcepts: concepts.size,
    byStyle,
    slots,
    entityWordDropRate: slots ? dropped / slots : null,
    maskedCropRate: slots ? masked / slots : null,
    backgroundKinds,
  };
}
