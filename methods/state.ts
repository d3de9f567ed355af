/**
 * Full resume of an interrupted task: model weights (and the linear head), AdamW moments and
 * per-parameter step counts, the schedule step, RNG state and every part's state (averaged
 * weights, counters), in the project's checkpoint format (safetensors + JSON metadata, written
 * atomically by `saveCheckpoint`). The Python code loses the optimizer state; this does not.
 *
 * Keys: `model.<key>`, `optim.exp_avg.<key>`, `optim.exp_avg_sq.<key>`, `part.<part>.<key>`.
 *
 * @module
 */
import { readCheckpoint, saveCheckpoint } from "../clip/formats/checkpoint.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { tf } from "../clip/backends/tf.ts";
import type { TrainRun } from "./train.ts";

/** Marker stored in the metadata of a training-state file. */
export const TRAIN_STATE_KIND = "mtil-train-state";

/** Metadata of a training-state file. */
export interface TrainStateMeta {
  /** Always {@link TRAIN_STATE_KIND}. */
  kind: string;
  /** Format version (1). */
  version: number;
  /** Next step to run. */
  step: number;
  /** Total steps of the schedule. */
  totalSteps: number;
  /** Task (dataset) name. */
  task: string;
  /** AdamW step count of every parameter. */
  optimSteps: Record<string, number>;
  /** JSON state of each part. */
  parts: Record<string, unknown>;
  /** Caller data (RNG states, config, …). */
  extra?: Record<string, unknown>;
}

function prefixed(out: StateDict, prefix: string, sd: StateDict): void {
  for (const [k, r] of sd) out.set(prefix + k, r);
}

function strip(sd: StateDict, prefix: string): StateDict {
  const out: StateDict = new Map();
  for (const [k, r] of sd) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), r);
  return out;
}

/**
 * Save everything needed to continue `run` at `run.step` into `path` (atomic). `extra` is stored
 * as JSON (e.g. `{ rng: rng.getState(), config }`).
 */
export async function saveTrainState(
  path: string,
  run: TrainRun,
  extra: Record<string, unknown> = {},
): Promise<void> {
  // webgpu has no synchronous reads: fetch everything the synchronous getters below read
  await readableOnHost([
    ...run.params.values(),
    ...run.optimizer.stateTensors(),
    ...run.parts.flatMap((p) => [...(p.weightsToSave?.()?.values() ?? [])]),
  ]);
  const sd: StateDict = new Map();
  for (const [k, v] of run.params) {
    const data = v.dtype === "int32" ? v.dataSync() as Int32Array : v.dataSync() as Float32Array;
    sd.set(`model.${k}`, {
      shape: v.shape.slice(),
      dtype: v.dtype === "int32" ? "int32" : "float32",
      data,
    });
  }
  const opt = run.optimizer.getState();
  prefixed(sd, "optim.exp_avg.", opt.expAvg);
  prefixed(sd, "optim.exp_avg_sq.", opt.expAvgSq);
  const parts: Record<string, unknown> = {};
  for (const p of run.parts) {
    const s = p.getState?.();
    if (!s) continue;
    if (s.tensors) prefixed(sd, `part.${p.name}.`, s.tensors);
    parts[p.name] = s.json ?? null;
  }
  const meta: TrainStateMeta = {
    kind: TRAIN_STATE_KIND,
    version: 1,
    step: run.step,
    totalSteps: run.totalSteps,
    task: run.task.name,
    optimSteps: opt.steps,
    parts,
    extra,
  };
  await saveCheckpoint(path, sd, { mtilTrainState: meta });
}

/** Read the metadata of a training-state file (throws when the file is not one). */
export async function readTrainState(
  path: string,
): Promise<{ stateDict: StateDict; meta: TrainStateMeta }> {
  const ck = await readCheckpoint(path);
  const meta = (ck.meta.mtilTrainState ??
    (ck.meta.mtil as Record<string, unknown> | undefined)?.mtilTrainState) as
      | TrainStateMeta
      | undefined;
  if (!meta || meta.kind !== TRAIN_STATE_KIND) {
    throw new Error(
      `${path}: not a training-state file (no "${TRAIN_STATE_KIND}" metadata); ` +
        `use --load for model checkpoints`,
    );
  }
  return { stateDict: ck.stateDict, meta };
}

/**
 * Restore a state saved by {@link saveTrainState} into a freshly created run of the same
 * configuration (`createRun`): weights, optimizer, parts, step. Returns the metadata (its
 * `extra` holds what the caller stored, e.g. RNG states).
 */
export async function loadTrainState(path: string, run: TrainRun): Promise<TrainStateMeta> {
  const { stateDict, meta } = await readTrainState(path);
  if (meta.task !== run.task.name) {
    throw new Error(`${path}: state of task "${meta.task}", not "${run.task.name}"`);
  }
  if (meta.totalSteps !== run.totalSteps) {
    throw new Error(
      `${path}: state of a ${meta.totalSteps}-step schedule, this run has ${run.totalSteps}`,
    );
  }
  const model = strip(stateDict, "model.");
  for (const [k, v] of run.params) {
    const r = model.get(k);
    if (!r) throw new Error(`${path}: training state lacks model weight "${k}"`);
    tf.tidy(() => v.assign(tf.tensor(r.data, r.shape, v.dtype)));
  }
  run.optimizer.setState({
    expAvg: strip(stateDict, "optim.exp_avg."),
    expAvgSq: strip(stateDict, "optim.exp_avg_sq."),
    steps: meta.optimSteps,
  });
  for (const p of run.parts) {
    if (!p.setState || !(p.name in meta.parts)) continue;
    p.setState({ tensors: strip(stateDict, `part.${p.name}.`), json: meta.parts[p.name] });
  }
  run.step = meta.step;
  return meta;
}
