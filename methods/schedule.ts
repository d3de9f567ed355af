/**
 * Learning-rate schedules, step-based exactly as the reference `cosine_lr` of the MTIL code.
 *
 * @module
 */

/** A schedule maps a 0-based iteration to its learning rate. */
export type LrSchedule = (step: number) => number;

/**
 * Warm-up cosine schedule of the reference (`utils.cosine_lr`): for `step < warmup` the rate is
 * `baseLr·(step+1)/warmup`, afterwards `0.5·(1+cos(π·e/es))·baseLr` with `e = step − warmup` and
 * `es = steps − warmup`. Where the reference divides by zero (`steps == warmup`) the rate stays at
 * `baseLr`.
 */
export function cosineLr(baseLr: number, warmupLength: number, steps: number): LrSchedule {
  return (step: number): number => {
    if (step < warmupLength) return baseLr * (step + 1) / warmupLength;
    const e = step - warmupLength;
    const es = steps - warmupLength;
    if (es <= 0) return baseLr;
    return 0.5 * (1 + Math.cos(Math.PI * e / es)) * baseLr;
  };
}

/** A constant learning rate. */
export function constantLr(lr: number): LrSchedule {
  return () => lr;
}

/**
 * Cosine decay without warm-up to a floor, as DIKI's `build_cosine_scheduler`:
 * `lr(i) = f + ½·(baseLr − f)·(1 + cos(π·i/steps))` with `f = baseLr·floorRatio` (default 1e-3),
 * computed in float64. `lr(0) = baseLr`; `lr(steps) = f`.
 */
export function cosineNoWarmupLr(baseLr: number, steps: number, floorRatio = 1e-3): LrSchedule {
  const f = baseLr * floorRatio;
  return (step: number): number => {
    if (steps <= 0) return baseLr;
    return f + 0.5 * (baseLr - f) * (1 + Math.cos(Math.PI * step / steps));
  };
}
