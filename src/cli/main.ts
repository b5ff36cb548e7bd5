#!/usr/bin/env -S node --no-concurrent-marking
// The kosmos-g command line. Each command lives in its own file under src/cli/ and registers
// itself on the program; this file only assembles them and turns thrown errors into one-line
// messages with a non-zero exit code.
//
// `--no-concurrent-marking` (here and in the npm scripts): onnxruntime-node hands every output back
// as a fresh buffer, so a training step allocates its whole parameter and optimizer state anew
// (about 25 MB for the bench MLP, 108 MB for U-Net-mini), and V8 starts a major collection every few
// steps. Marked concurrently, that collection runs on helper threads that take cores from ONNX
// Runtime's intra-op threads; marked on the main thread, it runs while ORT is idle.
import { Command } from 'commander';
import { registerConvertCommand } from './convert.js';
import { registerDataCommands } from './data.js';
import { registerParityCommand } from './parity.js';
import { registerDoctorCommand } from './doctor.js';
import { registerEvalCommand } from './eval.js';
import { registerGenerateCommand } from './generate.js';
import { registerInfoCommand } from './info.js';
import { registerInitRandomCommand } from './init-random.js';
import { registerServeCommand } from './serve.js';
import { registerTrainTokenizerCommand } from './train-tokenizer.js';
import { registerTrainCommand } from './train.js';
import { registerWorkerCommand } from './worker.js';

const program = new Command();
program
  .name('kosmos-g')
  .description('Kosmos-G: image generation from interleaved text-and-image prompts')
  .showHelpAfterError();
registerDoctorCommand(program);
registerDataCommands(program);
registerParityCommand(program);
registerGenerateCommand(program);
registerInfoCommand(program);
registerInitRandomCommand(program);
registerConvertCommand(program);
registerTrainTokenizerCommand(program);
registerTrainCommand(program);
registerEvalCommand(program);
registerServeCommand(program);
registerWorkerCommand(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`kosmos-g: ${message}\n`);
  process.exit(1);
});
