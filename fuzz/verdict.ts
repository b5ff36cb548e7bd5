// What counts as a finding. The contract of every reader the fuzzer drives is: bad input gives an
// `Error` with a clear one-line message, thrown by our own code. So a case is clean when it
// completes, or when it throws an `Error` (or a subclass of our own, such as PickleTruncatedError)
// whose message is a single non-empty line. Everything else is a finding:
//   non-error-throw  a thrown value that is not an Error at all (a string, undefined, an object)
//   internal-error   an error of one of the runtime's own classes — TypeError ("Cannot read
//                    properties of undefined"), RangeError ("Invalid typed array length", "Maximum
//                    call stack size exceeded", a DataView read out of bounds), SyntaxError (JSON.parse,
//                    BigInt), ReferenceError, EvalError, URIError, AggregateError — which means the
//                    input reached code that did not expect it
//   message          an Error whose message is empty or spans several lines
//   uncaught         an exception or rejection outside the case's own promise (a stray callback)
//   crash            the worker process died: a native abort, a signal, V8 out of heap
//   hang             the case ran past the time cap
//   memory           the worker's resident memory went past the cap
//   contract         a target saw its reader break its contract without throwing (a server that
//                    answers 500, or an error body that is not `{error: {code, message}}`)

export type FindingKind = 'non-error-throw' | 'internal-error' | 'message' | 'uncaught' | 'crash' | 'hang' | 'memory' | 'contract';

/** Thrown by a target whose reader misbehaved without throwing (see `contract` above). */
export class ContractViolation extends Error {}

/** What one case came to: accepted, refused cleanly (with the message), or a finding. */
export type Verdict =
  | { outcome: 'accepted' }
  | { outcome: 'refused'; message: string }
  | { outcome: 'finding'; kind: FindingKind; message: string; errorClass?: string; stack?: string };

export type FindingVerdict = Verdict & { outcome: 'finding' };

const RUNTIME_ERROR_CLASSES: readonly (new (...args: never[]) => Error)[] = [TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError];

/** The thrown value's class name ("TypeError"), or its type when it is not an object. */
function className(thrown: unknown): string {
  if (typeof thrown !== 'object' || thrown === null) return thrown === null ? 'null' : typeof thrown;
  return (thrown as object).constructor?.name ?? 'Object';
}

function isRuntimeError(thrown: unknown): boolean {
  return RUNTIME_ERROR_CLASSES.some((runtimeClass) => thrown instanceof runtimeClass);
}

/**
 * What a caller that joins a message's lines shows (the model config parsers' schema reports span
 * several lines, and every loader prints them as one): an Error of our own with its lines joined;
 * anything else unchanged, so that a runtime error still counts as one.
 */
export function withLinesJoined(thrown: unknown): unknown {
  if (!(thrown instanceof Error) || isRuntimeError(thrown)) return thrown;
  return new Error(thrown.message.replace(/\s+/g, ' ').trim());
}

/** The verdict on a value a target threw. */
export function judgeThrown(thrown: unknown): Verdict {
  if (!(thrown instanceof Error)) {
    return { outcome: 'finding', kind: 'non-error-throw', errorClass: className(thrown), message: String(thrown).slice(0, 2000) };
  }
  const stack = thrown.stack ?? '';
  if (thrown instanceof ContractViolation) return { outcome: 'finding', kind: 'contract', errorClass: className(thrown), message: thrown.message, stack };
  // Our own subclasses of Error are fine; the runtime's subclasses are not, whoever threw them.
  if (isRuntimeError(thrown)) {
    return { outcome: 'finding', kind: 'internal-error', errorClass: className(thrown), message: thrown.message, stack };
  }
  const message = thrown.message;
  if (message.trim() === '' || /[\r\n\u2028\u2029]/.test(message)) {
    return { outcome: 'finding', kind: 'message', errorClass: className(thrown), message, stack };
  }
  return { outcome: 'refused', message };
}

/**
 * Findings that are the same bug: an exception thrown from the same place (the first frame of its
 * stack) of the same class and kind, in any variant of the target; a crash, hang or memory finding
 * of the same variant.
 */
export function findingSignature(target: string, variant: string, verdict: FindingVerdict): string {
  const site = /^\s+at .*$/m.exec(verdict.stack ?? '')?.[0].trim().replace(/:\d+\)?$/, '');
  return site ? [target, verdict.kind, verdict.errorClass ?? '', site].join(' | ') : [target, variant, verdict.kind].join(' | ');
}
