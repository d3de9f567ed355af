/**
 * A small, fast, seeded pseudo-random number generator (xoshiro128**) whose whole state can be
 * saved and restored, plus stateless hashing helpers that derive independent seeds from
 * `(seed, stream, index)` tuples. Everything random in the data pipeline (shuffles, random
 * crops, SynthMTIL) goes through it, so the same seed gives the same bytes on every machine.
 *
 * @example
 * ```ts
 * import { Rng } from "./rng.ts";
 * const rng = new Rng(42);
 * const saved = rng.getState();
 * const a = rng.random();
 * rng.setState(saved);
 * console.assert(rng.random() === a);
 * ```
 *
 * @module
 */

/** The complete state of an {@linkcode Rng}: four unsigned 32-bit words. */
export type RngState = [number, number, number, number];

/** One round of splitmix32 on `x` (a 32-bit mixing function; bijective). */
export function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  return (x ^ (x >>> 15)) >>> 0;
}

/**
 * Hash a list of integers (each taken modulo 2³², non-integers truncated) into one unsigned
 * 32-bit seed. Order matters: `hashSeed(1, 2) !== hashSeed(2, 1)`. Used to give every
 * `(seed, split, index)` its own independent random stream.
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x6a09e667;
  for (const p of parts) {
    // Split into two 32-bit halves so that seeds above 2^32 still matter.
    const lo = Math.trunc(p) >>> 0;
    const hi = Math.trunc(p / 4294967296) >>> 0;
    h = mix32(h ^ lo);
    if (hi !== 0) h = mix32(h ^ hi ^ 0x85ebca6b);
  }
  return mix32(h ^ parts.length);
}

/**
 * mulberry32: a tiny seeded generator of uniform numbers in [0, 1) (32-bit state). Used where a
 * stream must be reproducible from one integer seed with no saved state (LoRA's initialisation,
 * random test weights); the data pipeline uses {@linkcode Rng}.
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * xoshiro128** (Blackman & Vigna) seeded through splitmix32. Period 2¹²⁸ − 1, 32-bit output,
 * passes BigCrush; plenty for data augmentation and shuffling.
 */
export class Rng {
  #s0 = 0;
  #s1 = 0;
  #s2 = 0;
  #s3 = 0;

  /** Create a generator from an integer seed (any number; hashed into the 128-bit state). */
  constructor(seed: number = 0) {
    this.seed(seed);
  }

  /** Re-seed in place (same as constructing a new generator with `seed`). */
  seed(seed: number): void {
    let x = hashSeed(seed);
    const next = () => (x = mix32(x));
    this.#s0 = next() | 0;
    this.#s1 = next() | 0;
    this.#s2 = next() | 0;
    this.#s3 = next() | 0;
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** Next unsigned 32-bit integer in `[0, 2³²)`. */
  nextU32(): number {
    const s0 = this.#s0, s1 = this.#s1, s2 = this.#s2, s3 = this.#s3;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    this.#s1 = s1 ^ n2;
    this.#s0 = s0 ^ n3;
    this.#s2 = n2 ^ t;
    this.#s3 = rotl(n3, 11);
    return result;
  }

  /** Uniform double in `[0, 1)` with 53 random bits. */
  random(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform double in `[lo, hi)`. */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.random();
  }

  /**
   * Unbiased uniform integer in `[0, n)` (rejection sampling; `n` a positive integer ≤ 2³²).
   * Like `torch.randint(0, n)` in distribution (not in values).
   */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) {
      throw new RangeError(`Rng.int: n must be an integer in [1, 2^32], got ${n}`);
    }
    if (n === 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }

  /** Uniform integer in `[lo, hi)`. */
  intRange(lo: number, hi: number): number {
    return lo + this.int(hi - lo);
  }

  /** Pick one element of a non-empty array uniformly. */
  choice<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Rng.choice: empty array");
    return items[this.int(items.length)];
  }

  /** Shuffle `arr` in place (Fisher–Yates) and return it. */
  shuffle<T>(arr: T[]): T[];
  /** Shuffle a typed array in place (Fisher–Yates) and return it. */
  shuffle<A extends Int32Array | Uint32Array | Float64Array>(arr: A): A;
  shuffle<T>(arr: T[] | Int32Array | Uint32Array | Float64Array): unknown {
    const a = arr as unknown as { [i: number]: T; length: number };
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return arr;
  }

  /** A random permutation of `0 … n-1`. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }

  /** Copy of the complete state (four unsigned 32-bit words; JSON-serialisable). */
  getState(): RngState {
    return [this.#s0 >>> 0, this.#s1 >>> 0, this.#s2 >>> 0, this.#s3 >>> 0];
  }

  /** Restore a state returned by {@linkcode Rng.getState}. */
  setState(state: readonly number[]): void {
    if (
      state.length !== 4 ||
      state.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff)
    ) {
      throw new RangeError(
        `Rng.setState: expected four uint32 words, got ${JSON.stringify(state)}`,
      );
    }
    if (state.every((w) => w === 0)) throw new RangeError("Rng.setState: all-zero state");
    this.#s0 = state[0] | 0;
    this.#s1 = state[1] | 0;
    this.#s2 = state[2] | 0;
    this.#s3 = state[3] | 0;
  }

  /** An independent copy with the same state. */
  clone(): Rng {
    const r = new Rng(0);
    r.setState(this.getState());
    return r;
  }

  /** A generator built from a state saved with {@linkcode Rng.getState}. */
  static fromState(state: readonly number[]): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }
}
