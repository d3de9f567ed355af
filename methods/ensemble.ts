/**
 * Weight-space averaging of the reference code: weight ensembling (`merge_we`), WiSE weight
 * ensembling (`wise_we`), moving average (`moving_avg`, anchors `n`/`t`/`zeroshot`), `wise_merge`
 * and WiSE-FT interpolation of state dicts.
 *
 * Like the reference (which loops over `model.parameters()`), these formulas act on parameters
 * only: BatchNorm running statistics (buffers) are left as they are. Every update is tidied per
 * variable.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";
import { isBufferKey } from "./params.ts";

/** Named variables (a model's `params`, or a standalone averaged copy). */
export type VarMap = Map<string, tf.Variable>;

function forParams(
  target: VarMap,
  fn: (name: string, t: tf.Variable) => tf.Tensor | undefined,
): void {
  for (const [name, t] of target) {
    if (isBufferKey(name)) continue;
    tf.tidy(() => {
      const next = fn(name, t);
      if (next) t.assign(next);
    });
  }
}

function need(map: ReadonlyMap<string, tf.Tensor>, name: string, what: string): tf.Tensor {
  const t = map.get(name);
  if (!t) throw new Error(`${what}: no parameter "${name}"`);
  return t;
}

/** A standalone copy of named variables (non-trainable), e.g. the start-of-task model. */
export function cloneVars(src: ReadonlyMap<string, tf.Tensor>): VarMap {
  const out: VarMap = new Map();
  for (const [k, t] of src) out.set(k, tf.tidy(() => tf.variable(t.clone(), false, undefined)));
  return out;
}

/** Dispose every variable of a map. */
export function disposeVars(m: ReadonlyMap<string, tf.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

/** Copy the values of `src` into `target` (same keys; buffers included). */
export function assignVars(target: VarMap, src: ReadonlyMap<string, tf.Tensor>): void {
  for (const [k, t] of target) t.assign(need(src, k, "assignVars"));
}

/**
 * Weight ensembling, `merge_we`: `we ← (we·n + θ) / (n + 1)`. The caller increments `n` first
 * (the reference does `we_n += 1` then merges, the start copy counting as the first sample).
 */
export function mergeWe(model: ReadonlyMap<string, tf.Tensor>, we: VarMap, n: number): void {
  forParams(we, (k, w) => w.mul(n).add(need(model, k, "mergeWe")).div(n + 1));
}

/**
 * WiSE weight ensembling, `wise_we`: `we ← ((we·n + θ)/(n+1))·α + θ_fix·(1−α)` where `θ_fix` is
 * the loaded (start-of-run) model.
 */
export function wiseWe(
  model: ReadonlyMap<string, tf.Tensor>,
  we: VarMap,
  n: number,
  fixed: ReadonlyMap<string, tf.Tensor>,
  alpha: number,
): void {
  forParams(we, (k, w) =>
    w.mul(n).add(need(model, k, "wiseWe")).div(n + 1).mul(alpha).add(
      need(fixed, k, "wiseWe").mul(1 - alpha),
    ));
}

/**
 * Moving average as the reference codes it, `moving_avg(model, anchor, decay)`: the *training*
 * model is pulled towards the anchor, `θ ← θ·decay + anchor·(1−decay)`.
 */
export function movingAvg(
  model: VarMap,
  anchor: ReadonlyMap<string, tf.Tensor>,
  decay: number,
): void {
  forParams(model, (k, p) => p.mul(decay).add(need(anchor, k, "movingAvg").mul(1 - decay)));
}

/** The moving-average anchors of `--mv_avg_model`. */
export type MovingAvgAnchor = "n" | "t" | "zeroshot";

/**
 * `wise_merge` after training: `θ ← θ·α + θ_other·(1−α)` (`θ_other` the zero-shot model or the
 * loaded one, `--wise_ft_model`).
 */
export function wiseMerge(
  model: VarMap,
  other: ReadonlyMap<string, tf.Tensor>,
  alpha: number,
): void {
  forParams(model, (k, p) => p.mul(alpha).add(need(other, k, "wiseMerge").mul(1 - alpha)));
}

/**
 * WiSE-FT on state dicts (evaluation, `--wise-ft --alpha`): `α·θ_ft + (1−α)·θ_zs` for parameters;
 * buffers and integer tensors are taken from `finetuned`. Keys must match.
 */
export function wiseFt(finetuned: StateDict, zeroshot: StateDict, alpha: number): StateDict {
  const out: StateDict = new Map();
  for (const [k, ft] of finetuned) {
    const zs = zeroshot.get(k);
    if (!zs) throw new Error(`wiseFt: key "${k}" missing from the zero-shot model`);
    if (isBufferKey(k) || !(ft.data instanceof Float32Array)) {
      out.set(k, ft);
      continue;
    }
    if (zs.data.length !== ft.data.length) {
      throw new Error(`wiseFt: shape mismatch at "${k}": ${ft.shape} vs ${zs.shape}`);
    }
    const d = new Float32Array(ft.data.length);
    for (let i = 0; i < d.length; i++) d[i] = alpha * ft.data[i] + (1 - alpha) * zs.data[i];
    out.set(k, { shape: ft.shape.slice(), dtype: ft.dtype, data: d });
  }
  return out;
}
