/**
 * The data files that ship with the library: class names and prompt templates of every MTIL
 * dataset (`classnames.json`, `templates.json`), the 80/20 split indices of Caltech101, EuroSAT
 * and SUN397 (`splits/`), the MTIL protocol facts and published results (`protocol/`), and the
 * embedded SynthMTIL model (`models/synth-tiny.safetensors`). Downloaded datasets also go under
 * this folder by default (`./data/<Dataset>`), but are not part of the package.
 *
 * @module
 */

/** Absolute path of this folder. */
export const DATA_DIR: string = new URL(".", import.meta.url).pathname.replace(/\/$/, "");

/** Absolute path of a file shipped under `data/` (e.g. `dataPath("splits/EuroSAT.json")`). */
export function dataPath(rel: string): string {
  if (rel.split("/").includes("..")) throw new Error(`dataPath: ".." not allowed in ${rel}`);
  return `${DATA_DIR}/${rel}`;
}

/** Parse a JSON data file shipped under `data/`. */
export async function readDataJson<T = unknown>(rel: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(dataPath(rel))) as T;
}
