/**
 * A short fingerprint of a model's weights, for naming caches that depend on them.
 *
 * @module
 */
import type { ClipModel } from "../clip/types.ts";

/**
 * 16 hex digits identifying the model's config and the weights whose key passes `filter`: FNV-1a
 * over the config and up to 4096 evenly spaced values of every such parameter (sorted keys).
 * Not cryptographic; changing any sampled weight (and, in practice, any training) changes it.
 */
export function checkpointFingerprint(
  model: ClipModel,
  filter: (key: string) => boolean = () => true,
): string {
  // two independent 32-bit FNV-1a lanes make 64 bits
  let h1 = 0x811c9dc5, h2 = 0x01000193 ^ 0x5bd1e995;
  const mix = (x: number) => {
    h1 = Math.imul(h1 ^ (x & 0xff), 0x01000193) >>> 0;
    h1 = Math.imul(h1 ^ ((x >>> 8) & 0xff), 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ (x >>> 16), 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ x, 0x01000193) >>> 0;
  };
  for (const c of JSON.stringify(model.config)) mix(c.charCodeAt(0));
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (const key of [...model.params.keys()].filter(filter).sort()) {
    for (const c of key) mix(c.charCodeAt(0));
    const d = model.params.get(key)!.dataSync();
    const stride = Math.max(1, Math.floor(d.length / 4096));
    for (let i = 0; i < d.length; i += stride) {
      f[0] = d[i];
      mix(bits[0]);
    }
  }
  return h1.toString(16).padStart(8, "0") + h2.toString(16).padStart(8, "0");
}
