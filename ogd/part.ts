/**
 * OGD as a training part: records gradient snapshots of the tracked parameters during a task and
 * turns them into a basis at its end (`--orthogonal-gradients N`), and projects the current
 * gradients onto the orthogonal complement of earlier tasks' bases before each optimizer step
 * (`--orthogonal-gradients-path FILE`).
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { TrainPart, TrainRun } from "../methods/train.ts";
import type { Basis } from "./basis.ts";
import { GradientSnapshots, shouldTrackParam, type Snapshots } from "./track.ts";
import { OgdProjector, type ProjectionMode } from "./project.ts";
import { loadBases, mergeBasisFiles, saveBases } from "./io.ts";

/** Options of {@link ogdPart}. */
export interface OgdPartOptions {
  /** Record N+1 gradient snapshots over the task (`--orthogonal-gradients N`); 0 = none. */
  snapshots?: number;
  /** Energy threshold of the basis (`--ogd-energy`, default 0.97). */
  energy?: number;
  /** Basis files of earlier tasks to project against (`--orthogonal-gradients-path`). */
  basisPaths?: string[];
  /** `"orthonormal"` (default: stacked and re-orthonormalised) or `"sequential"` (Python). */
  mode?: ProjectionMode;
  /** Folder where `grad_<Dataset>.safetensors` is written at the task's end. */
  saveDir?: string;
  /** Which trainable parameters are tracked (default: the reference rule, {@link shouldTrackParam}). */
  track?: (name: string) => boolean;
}

/** The OGD part plus what it produced. */
export interface OgdPart extends TrainPart {
  /** Path of the basis file written at the end (previous bases with this task's appended). */
  savedPath?: string;
  /** Tracked parameter names (known after `init`). */
  tracked: string[];
}

/** Build the OGD training part (see the module documentation). */
export function ogdPart(options: OgdPartOptions): OgdPart {
  const energy = options.energy ?? 0.97;
  const track = options.track ?? shouldTrackParam;
  let projector: OgdProjector | undefined;
  let previous = new Map<string, Basis[]>();
  let recorder: GradientSnapshots | undefined;
  const part: OgdPart = {
    name: "ogd",
    tracked: [],
    async init(run: TrainRun) {
      part.tracked = run.trainable.filter(track);
      if (part.tracked.length === 0) {
        throw new Error(
          "OGD: no trainable parameter matches the tracking rule (attn/mlp/ln weights, or the " +
            "LoRA adapters); check --train-mode",
        );
      }
      if (options.basisPaths?.length) {
        const files = [];
        for (const p of options.basisPaths) files.push(await loadBases(p, { energy }));
        previous = mergeBasisFiles(files);
        const use = new Map<string, Basis[]>();
        for (const n of part.tracked) {
          const b = previous.get(n);
          if (b) use.set(n, b);
        }
        if (use.size === 0) {
          throw new Error(
            `OGD: ${options.basisPaths.join(", ")} has no basis for any tracked parameter ` +
              `(e.g. ${part.tracked[0]}); was it made with the same model and train mode?`,
          );
        }
        projector = new OgdProjector(use, { mode: options.mode });
      }
      if (options.snapshots && options.snapshots > 0) {
        recorder = new GradientSnapshots(run.totalSteps, options.snapshots);
      }
    },
    async transformGrads(_run, step, grads) {
      const due = recorder?.due(step) ?? false;
      for (const n of part.tracked) {
        const g = grads.get(n);
        if (!g) continue;
        if (due) {
          // the snapshot is a host copy (its basis is an SVD on the host): an asynchronous read,
          // the only one on webgpu, and only on snapshot steps
          await readableOnHost([g]);
          recorder!.record(n, g);
        }
        if (projector?.has(n)) grads.set(n, projector.project(n, g));
      }
    },
    async end(run: TrainRun) {
      if (!recorder) return;
      const bases = recorder.bases(energy);
      const combined = new Map<string, Basis[]>();
      const shapes = new Map<string, number[]>();
      for (const n of part.tracked) {
        const list = [...(previous.get(n) ?? [])];
        const b = bases.get(n);
        if (b) list.push(b);
        if (list.length) combined.set(n, list);
        shapes.set(n, [...run.params.get(n)!.shape]);
      }
      if (options.saveDir) {
        await Deno.mkdir(options.saveDir, { recursive: true });
        part.savedPath = `${options.saveDir}/grad_${run.task.name}.safetensors`;
        await saveBases(part.savedPath, combined, {
          shapes,
          meta: { task: run.task.name, energy, snapshots: options.snapshots },
        });
      }
    },
    getState() {
      if (!recorder) return {};
      const tensors: StateDict = new Map();
      for (const [n, s] of recorder.snapshots()) {
        tensors.set(n, { shape: [s.k, s.dim], dtype: "float32", data: s.data });
      }
      const shapes = Object.fromEntries([...recorder.snapshots()].map(([n, s]) => [n, s.shape]));
      return { tensors, json: { shapes } };
    },
    setState(state) {
      if (!recorder || !state.tensors) return;
      const shapes = (state.json as { shapes?: Record<string, number[]> })?.shapes ?? {};
      const snaps = new Map<string, Snapshots>();
      for (const [n, t] of state.tensors) {
        snaps.set(n, {
          k: t.shape[0],
          dim: t.shape[1],
          shape: shapes[n] ?? [t.shape[1]],
          data: t.data as Float32Array,
        });
      }
      recorder.load(snaps);
    },
    dispose() {
      projector?.dispose();
      projector = undefined;
    },
  };
  return part;
}

/** For tests and tools: the dot products of a gradient with the basis rows of a projector. */
export function basisDots(basis: Basis, grad: tf.Tensor): number[] {
  const g = grad.dataSync();
  const out: number[] = [];
  for (let r = 0; r < basis.rows; r++) {
    let s = 0;
    for (let i = 0; i < basis.dim; i++) s += basis.data[r * basis.dim + i] * g[i];
    out.push(s);
  }
  return out;
}
