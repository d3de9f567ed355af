/**
 * DIKI checkpoints: the pools and the Gaussians of a {@link Diki} (the CLIP weights stay frozen
 * and are not repeated), in the project's checkpoint format (safetensors, written atomically),
 * with the options in the metadata so that {@link loadDiki} rebuilds the same pools.
 *
 * @module
 */
import { readCheckpoint, saveCheckpoint } from "../../clip/formats/checkpoint.ts";
import type { ClipModel } from "../../clip/types.ts";
import { Diki, type DikiOptions } from "./diki.ts";
import { poolSlots } from "./prefix.ts";

/** Marker of a DIKI checkpoint's metadata. */
export const DIKI_STATE_KIND = "mtil-diki";

/** Metadata of a DIKI checkpoint (`__metadata__.mtil.mtilDiki`). */
export interface DikiMeta {
  /** Always {@link DIKI_STATE_KIND}. */
  kind: string;
  /** Format version (1). */
  version: number;
  /** The options the pools were built with. */
  options: Required<DikiOptions>;
  /** Tasks with a Gaussian. */
  learnt: number;
}

/** Save pools and Gaussians of `d` to `path` (atomic); `extra` goes into the metadata. */
export async function saveDiki(
  path: string,
  d: Diki,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const meta: DikiMeta = {
    kind: DIKI_STATE_KIND,
    version: 1,
    options: d.options,
    learnt: d.learnt,
  };
  await saveCheckpoint(path, d.stateDict(), { ...extra, method: "DIKI", mtilDiki: meta });
}

function metaOf(ck: { meta: Record<string, unknown> }): DikiMeta | undefined {
  const m = (ck.meta.mtilDiki ?? (ck.meta.mtil as Record<string, unknown> | undefined)?.mtilDiki) as
    | DikiMeta
    | undefined;
  return m && m.kind === DIKI_STATE_KIND ? m : undefined;
}

/**
 * A {@link Diki} for `model` from a file written by {@link saveDiki}. The pool shapes the options
 * imply are checked against the file's tensors before anything is allocated.
 */
export async function loadDiki(path: string, model: ClipModel): Promise<Diki> {
  const ck = await readCheckpoint(path);
  const meta = metaOf(ck);
  if (!meta || typeof meta.options !== "object" || meta.options === null) {
    throw new Error(`${path}: not a DIKI checkpoint (no "${DIKI_STATE_KIND}" metadata)`);
  }
  const o = meta.options;
  for (const slot of poolSlots(model.config, o)) {
    const r = ck.stateDict.get(slot.name);
    const want = [o.tasks, 2, slot.prefixLen, slot.width];
    if (!r || r.shape.join() !== want.join()) {
      throw new Error(
        `${path}: DIKI pool "${slot.name}" ${r ? `has shape [${r.shape}]` : "is missing"}, ` +
          `expected [${want}] for this model and the file's options`,
      );
    }
  }
  const d = new Diki(model, o);
  try {
    d.loadStateDict(ck.stateDict, path);
  } catch (e) {
    d.dispose();
    throw e;
  }
  return d;
}

/** Load pools and Gaussians from `path` into an existing {@link Diki} of the same options. */
export async function loadDikiInto(path: string, d: Diki): Promise<void> {
  const ck = await readCheckpoint(path);
  if (!metaOf(ck)) {
    throw new Error(`${path}: not a DIKI checkpoint (no "${DIKI_STATE_KIND}" metadata)`);
  }
  d.loadStateDict(ck.stateDict, path);
}
