// Reverse-mode automatic differentiation over a traced graph: walks the nodes between the
// parameters and the loss backwards, applying the VJP table (vjp.ts), and appends the backward
// nodes to the same graph so one ONNX model computes the loss and its gradients.
import { isFloat } from '../onnx/dtype.js';
import type { Node, Value } from './graph.js';
import { add } from './ops/elementwise.js';
import { full } from './ops/shape.js';
import { vjpRules } from './vjp.js';

export interface GradOptions {
  /** Cotangent of `output` (defaults to 1; required when `output` is not a scalar). */
  outputGrad?: Value;
}

/**
 * Gradients of `output` with respect to each of `wrt` (zeros where it does not depend on it).
 * Only nodes on a path from `wrt` to `output` are differentiated, so values not listed in `wrt`
 * (frozen parameters, data) get no backward nodes at all.
 */
export function grad(output: Value, wrt: readonly Value[], options: GradOptions = {}): Value[] {
  const graph = output.graph;
  if (!isFloat(output.dtype)) throw new Error(`grad: ${output} is not floating point`);
  if (!options.outputGrad && output.rank !== 0) throw new Error(`grad: ${output} is not a scalar; pass outputGrad`);
  for (const value of wrt) {
    if (value.graph !== graph) throw new Error(`grad: ${value.name} belongs to another graph`);
    if (!isFloat(value.dtype)) throw new Error(`grad: cannot differentiate with respect to ${value} (not floating point)`);
  }

  // Forward sweep: values that depend differentiably on some wrt value.
  const active = new Set<Value>(wrt);
  const nodeCount = graph.nodes.length;
  for (let i = 0; i < nodeCount; i++) {
    const node = graph.nodes[i]!;
    if (graph.stopGradientNodes.has(node)) continue;
    if (!node.inputs.some((value) => value && active.has(value))) continue;
    for (const value of node.outputs) if (isFloat(value.dtype)) active.add(value);
  }

  // Backward sweep over the nodes that existed before differentiation started.
  const cotangents = new Map<Value, Value>();
  cotangents.set(output, options.outputGrad ?? graph.scalar(1, output.dtype));
  graph.scope('backward', () => {
    for (let i = nodeCount - 1; i >= 0; i--) {
      const node = graph.nodes[i]!;
      const outputGrads = node.outputs.map((value) => cotangents.get(value) ?? null);
      if (outputGrads.every((g) => g === null) || graph.stopGradientNodes.has(node)) continue;
      const needs = node.inputs.map((value) => value !== null && active.has(value));
      if (!needs.some(Boolean)) continue;
      const inputGrads = graph.scope(node.name, () => applyRule(node, outputGrads, needs));
      node.inputs.forEach((value, index) => {
        const contribution = inputGrads[index];
        if (!value || !needs[index] || !contribution) return;
        const existing = cotangents.get(value);
        cotangents.set(value, existing ? add(existing, contribution) : contribution);
      });
    }
  });
  return wrt.map((value) => cotangents.get(value) ?? full(value, value.shape, 0));
}

function applyRule(node: Node, outputGrads: (Value | null)[], needs: boolean[]): (Value | null)[] {
  const rule = vjpRules[node.domain ? `${node.domain}.${node.opType}` : node.opType];
  if (!rule) throw new Error(`no gradient rule for ${node.opType} (node ${node.name})`);
  return rule({ node, outputGrads, needs });
}
