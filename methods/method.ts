/**
 * Continual-learning methods as values, and the registry that makes them runnable from the
 * command line.
 *
 * A {@link Method} is what a factory such as `finetune()`, `zscl({ refDataset })` or
 * `icarl({ memorySize })` returns: typed options fixed at construction, plus a lifecycle —
 * `setup` builds the training parts of one task, `afterTask` runs once the task is trained
 * (iCaRL's herding), and `saveState` / `loadState` keep what must survive between tasks and
 * processes (iCaRL's exemplar memory). `trainTask` drives that lifecycle.
 *
 * A {@link MethodDefinition} registers a method by name with its command-line flags, help text
 * and a `fromFlags` that turns parsed flags into the factory's typed options. `deno task train`,
 * `deno task sequence` and the demo accept every registered method; a third-party module
 * registers its own with {@link registerMethod} and is loaded with `--import FILE`.
 *
 * @example A method defined outside the library
 * ```ts
 * import { l2Loss, type Method, registerMethod } from "jsr:@mtil/mtil/methods";
 *
 * // finetuning with an extra pull towards the start-of-task weights
 * function anchored(options: { weight: number }): Method {
 *   return { name: "anchored", options, setup: () => ({ parts: [l2Loss(options.weight)] }) };
 * }
 * registerMethod({
 *   name: "anchored",
 *   summary: "finetune plus L2 to the start-of-task weights",
 *   flags: { "anchor-weight": { type: "string", default: "1", description: "L2 weight" } },
 *   fromFlags: (f) => ({ weight: Number(f["anchor-weight"]) }),
 *   create: anchored,
 * });
 * ```
 *
 * @module
 */
import type { ClipModel } from "../clip/types.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import type { Dataset } from "../datasets/types.ts";
import type { tf } from "../clip/backends/tf.ts";
import type { RunSetup, TrainPart, TrainTask } from "./train.ts";

/** How much a library run prints: nothing, progress bars and results, or also configs and losses. */
export type LogLevel = "silent" | "progress" | "verbose";

/** Everything a method may need to build the parts of one task. */
export interface MethodContext {
  /** The model being trained, holding the start-of-task weights. */
  model: ClipModel;
  /** The training task (its prompts and batch stream). */
  task: TrainTask;
  /** The training dataset. */
  dataset: Dataset;
  /** Weights of the zero-shot model (before any task). */
  zeroShot: StateDict;
  /** Seed of the run. */
  seed: number;
  /** Training batch size. */
  batchSize: number;
  /** Loader worker threads. */
  workers: number;
  /** Root folder of the datasets. */
  dataRoot: string;
  /** Load a dataset by registry name (train split unless said otherwise). */
  loadDataset(name: string, options?: { split?: "train" | "test"; num?: number }): Promise<Dataset>;
  /** Print a line unless the run is silent. */
  log(line: string): void;
}

/** What a method's `setup` returns. */
export interface MethodSetup {
  /** Training parts, appended after the common ones (cross-entropy, L2, averaging). */
  parts: TrainPart[];
  /**
   * Replace the common cross-entropy part (default false: the method's parts are added to it).
   * A method whose loss is not CLIP's cross-entropy sets this.
   */
  replacesCrossEntropy?: boolean;
  /** Free what `setup` created (streams, reference tensors). Called after the task. */
  dispose?(): void | Promise<void>;
  /**
   * Training options the method fixes, overriding the recipe's (DIKI: its SGD optimizer and
   * schedule, its learning rate, the prefix pools as the only trained parameters).
   */
  trainOptions?: RunSetup["options"];
}

/** A method's own classifier, used by `evaluate` (and so the accuracy matrix) instead of the
 * zero-shot head. */
export interface MethodClassifier {
  /** Logits `[n, C]` of a batch of preprocessed NHWC images, in the dataset's class order. */
  predict(images: tf.Tensor4D): tf.Tensor2D | Promise<tf.Tensor2D>;
  /** Extra numbers of the evaluation (e.g. DIKI's task-vote accuracy), after the last batch. */
  details?(): Record<string, number>;
  /** Free what it holds. */
  dispose(): void;
}

/**
 * What `afterTask` gets: the context of `setup` (without the training task's batch stream, which
 * may not exist when a finished task is only being recorded) plus the weights that were saved.
 */
export interface AfterTaskContext extends Omit<MethodContext, "task"> {
  /** The weights the task produced (the weight-ensembled ones with `we`), keyed like the model. */
  weights: StateDict;
  /** Evaluation batch size (for passes over the training data, e.g. herding). */
  batchSizeEval: number;
}

/**
 * A continual-learning method: typed options and a per-task lifecycle. Made by a factory
 * (`finetune()`, `lwf()`, `zscl()`, `icarl()`, or a third party's).
 */
export interface Method {
  /** Registered name (also written to checkpoints and manifests). */
  readonly name: string;
  /** The options it was made with (JSON-serialisable parts end up in manifests). */
  readonly options: Readonly<object>;
  /** Build the parts of one task. */
  setup(ctx: MethodContext): MethodSetup | Promise<MethodSetup>;
  /** After a task finished training (and its checkpoint is saved). */
  afterTask?(ctx: AfterTaskContext): void | Promise<void>;
  /** Write what must survive between tasks into `dir` (atomically). */
  saveState?(dir: string): Promise<void>;
  /** Read what `saveState` wrote (missing files: start empty), for `model`. */
  loadState?(dir: string, model: ClipModel): Promise<void>;
  /**
   * The method's classifier of `dataset` for evaluation, or undefined for CLIP's zero-shot head
   * (the default; e.g. before any task, or for methods that change the weights only).
   */
  classifier?(model: ClipModel, dataset: Dataset): Promise<MethodClassifier | undefined>;
  /**
   * Whether the task `name` is already finished as far as the method is concerned (iCaRL: its
   * exemplars are in the memory). Default: the checkpoint alone decides.
   */
  taskDone?(name: string): boolean;
}

/** A command-line flag of a method (the `node:util` `parseArgs` form plus help text). */
export interface FlagSpec {
  /** Value type. */
  type: "string" | "boolean";
  /** Default value (a string for `string` flags). */
  default?: string | boolean;
  /** One line of help. */
  description: string;
}

/** Parsed flag values (kebab-case names). */
export type FlagValues = Record<string, string | boolean | undefined>;

/** A method as the registry knows it: name, flags, help, and how flags become options. */
export interface MethodDefinition<O = unknown> {
  /** Name used by `--method`. */
  name: string;
  /** One line for `--help`. */
  summary: string;
  /** The method's own flags (kebab-case, without `--`). */
  flags: Record<string, FlagSpec>;
  /** Typed options from parsed flags; throws an error naming the flag when a value is wrong. */
  fromFlags(flags: FlagValues): O | Promise<O>;
  /** The factory. */
  create(options: O): Method;
}

const REGISTRY = new Map<string, MethodDefinition<unknown>>();

/**
 * Register (or replace) a method definition. Flags shared with another method must be declared
 * identically (same type and default); a conflicting declaration throws.
 */
export function registerMethod<O>(definition: MethodDefinition<O>): void {
  if (!/^[A-Za-z][\w-]*$/.test(definition.name)) {
    throw new Error(`registerMethod: "${definition.name}" is not a valid method name`);
  }
  for (const [flag, spec] of Object.entries(definition.flags)) {
    for (const other of REGISTRY.values()) {
      if (other.name === definition.name) continue;
      const o = other.flags[flag];
      if (o && (o.type !== spec.type || o.default !== spec.default)) {
        throw new Error(
          `registerMethod ${definition.name}: flag --${flag} is already declared by ` +
            `${other.name} with another type or default`,
        );
      }
    }
  }
  REGISTRY.set(definition.name, definition as MethodDefinition<unknown>);
}

/** Names of the registered methods, in registration order. */
export function methodNames(): string[] {
  return [...REGISTRY.keys()];
}

/** The definition registered as `name`; throws listing the registered names. */
export function methodDefinition(name: string): MethodDefinition<unknown> {
  const d = REGISTRY.get(name);
  if (!d) throw new Error(`unknown method "${name}"; registered: ${methodNames().join(", ")}`);
  return d;
}

/** Every registered method's flags merged (a flag shared by several methods appears once). */
export function methodFlags(): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {};
  for (const d of REGISTRY.values()) Object.assign(out, d.flags);
  return out;
}

/** Build a method by registered name from parsed flags. */
export async function methodFromFlags(name: string, flags: FlagValues): Promise<Method> {
  const d = methodDefinition(name);
  return d.create(await d.fromFlags(flags));
}

/** The `--help` section listing every registered method and its flags. */
export function methodsHelp(): string {
  const lines = ["methods (--method NAME):"];
  for (const d of REGISTRY.values()) {
    lines.push(`  ${d.name.padEnd(10)} ${d.summary}`);
    for (const [flag, spec] of Object.entries(d.flags)) {
      const arg = spec.type === "boolean" ? "" : " X";
      const def = spec.default !== undefined && spec.type !== "boolean"
        ? ` (default ${spec.default})`
        : "";
      lines.push(`      --${(flag + arg).padEnd(24)} ${spec.description}${def}`);
    }
  }
  return lines.join("\n");
}
