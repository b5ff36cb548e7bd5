// Fixture 05: diffusers AutoencoderKL (SD 1.5 layout, tiny). One inference graph with the weights read
// from the fixture's safetensors by byte offset computes the posterior (mean, std, log-variance,
// mode, the sample for the given noise) of `image`, the decoding of `latents` and of the mean, and
// Kosmos-G's post-processed decoding of `latents`.
import { Graph } from '../../graph/graph.js';
import { GraphSession } from '../../graph/session.js';
import { encodeModel } from '../../onnx/proto.js';
import { openSafetensors } from '../../io/safetensors-index.js';
import { AutoencoderKL } from '../../models/autoencoder_kl.js';
import { type FixtureCase, type ParityRow, compareOutputs } from '../compare.js';

export async function runCase(fixture: FixtureCase): Promise<ParityRow[]> {
  const model = await AutoencoderKL.fromPretrained(fixture.directory);
  const input = (name: string) => {
    const tensor = fixture.inputs.get(name);
    if (!tensor) throw new Error(`${fixture.name}: no input ${name}`);
    return tensor;
  };
  const graph = new Graph('autoencoder_kl');
  const image = graph.input('image', 'float32', input('image').shape);
  const latents = graph.input('latents', 'float32', input('latents').shape);
  const eps = graph.input('eps', 'float32', input('eps').shape);
  const reader = await openSafetensors(fixture.directory);
  try {
    const { context, externalData } = model.externalWeights(graph, reader);
    const distribution = model.encode(context, image);
    const outputs = {
      latent_mean: distribution.mean,
      latent_std: distribution.std,
      latent_logvar: distribution.logvar,
      latent_mode: distribution.mean,
      latent_sample_with_eps: model.sample(distribution, eps),
      decoded: model.decode(context, latents),
      decoded_from_mean: model.decode(context, distribution.mean),
      decoded_kosmosg_postprocessed: model.decodeToImage(context, latents),
    };
    const session = await GraphSession.create(encodeModel(graph.toModel(outputs)), { externalData });
    try {
      const actual = await session.run({ image: input('image'), latents: input('latents'), eps: input('eps') });
      return compareOutputs(fixture, actual);
    } finally {
      await session.release();
    }
  } finally {
    await reader.close();
  }
}
