/**
 * DIKI's command-line flags, for the CLIs to wire: the `node:util` `parseArgs` spec, the help
 * text and the validated conversion to {@link DikiOptions}. Errors name the flag and say what it
 * takes.
 *
 * @module
 */
import type { DikiOptions } from "./diki.ts";
import { DIKI_RECIPE } from "./diki.ts";

/** `parseArgs` options of DIKI's flags (values are strings; see {@link dikiOptionsFromFlags}). */
export const DIKI_PARSE_OPTIONS = {
  "diki-depth-vision": { type: "string" },
  "diki-depth-text": { type: "string" },
  "diki-prefix-len-vision": { type: "string" },
  "diki-prefix-len-text": { type: "string" },
  "diki-weight-scale": { type: "string" },
  "diki-task-id-known": { type: "boolean" },
} as const;

/** Help lines of DIKI's flags. */
export const DIKI_HELP: string = [
  `  DIKI (--method DIKI; SGD lr ${DIKI_RECIPE.lr}, cosine without warm-up, only the prefix pools train):`,
  `    --diki-depth-vision N      image-tower blocks with prefixes (default ${DIKI_RECIPE.depthVision}; ViT only)`,
  `    --diki-depth-text N        text-tower blocks with prefixes (default ${DIKI_RECIPE.depthText})`,
  `    --diki-prefix-len-vision N image prefix length (default ${DIKI_RECIPE.prefixLenVision})`,
  `    --diki-prefix-len-text N   text prefix length (default ${DIKI_RECIPE.prefixLenText})`,
  `    --diki-weight-scale X      w = sigmoid(lp/X − 1) (default ${DIKI_RECIPE.weightScale}, the reference's)`,
  `    --diki-task-id-known       evaluate each task's dataset with its own prefixes (default: task-id free)`,
].join("\n");

function int(flags: Record<string, unknown>, name: string, min: number): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const s = String(v).trim();
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > 10_000) {
    throw new Error(`--${name} takes an integer from ${min} to 10000, got "${v}"`);
  }
  return Number(s);
}

/**
 * {@link DikiOptions} from parsed flag values (unset flags keep the recipe's defaults) for a
 * sequence of `tasks` tasks.
 */
export function dikiOptionsFromFlags(flags: Record<string, unknown>, tasks: number): DikiOptions {
  if (!Number.isInteger(tasks) || tasks < 1) {
    throw new Error(`DIKI needs at least one task, got ${tasks}`);
  }
  const o: DikiOptions = { tasks };
  const dv = int(flags, "diki-depth-vision", 0), dt = int(flags, "diki-depth-text", 0);
  const lv = int(flags, "diki-prefix-len-vision", 1), lt = int(flags, "diki-prefix-len-text", 1);
  if (dv !== undefined) o.depthVision = dv;
  if (dt !== undefined) o.depthText = dt;
  if (lv !== undefined) o.prefixLenVision = lv;
  if (lt !== undefined) o.prefixLenText = lt;
  const ws = flags["diki-weight-scale"];
  if (ws !== undefined) {
    const x = Number(ws);
    if (String(ws).trim() === "" || !Number.isFinite(x) || x <= 0) {
      throw new Error(`--diki-weight-scale takes a positive number, got "${ws}"`);
    }
    o.weightScale = x;
  }
  return o;
}
