/**
 * DIKI in the method registry (`registerMethod("DIKI", …)`): `train(model, task, { method:
 * "DIKI", methodOptions })` with `methodOptions` = {@link DikiMethodOptions}. Importing this module
 * registers it.
 *
 * @module
 */
import { registerMethod } from "../train.ts";
import { Diki, type DikiOptions, type DikiTrainSetupOptions } from "./diki.ts";

/** `methodOptions` of the registered `DIKI` method. */
export interface DikiMethodOptions extends Partial<DikiOptions>, DikiTrainSetupOptions {
  /** The sequence's DIKI state (default: a new one with `tasks` rows, default 1). */
  diki?: Diki;
  /** Index of the task being trained (default 0). */
  taskIndex?: number;
}

registerMethod("DIKI", (model, _task, o) => {
  const m = o as DikiMethodOptions;
  const d = m.diki ?? new Diki(model, { ...m, tasks: m.tasks ?? 1 });
  return d.trainSetup(m.taskIndex ?? 0, { gaussianBatches: m.gaussianBatches });
});
