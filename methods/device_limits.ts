/**
 * Pre-flight check of a training step against a device's largest storage binding
 * (`maxStorageBufferBindingSize` on WebGPU): a tensor larger than that cannot be bound by any
 * shader and the step would fail mid-way (or, on some drivers, compute garbage). The largest
 * tensors of a CLIP step are estimated from the model config and the batch size, and a step that
 * cannot fit fails *before* running, naming the op, its size, the limit and the largest batch
 * that fits (with the `--accum-steps` that would keep the batch).
 *
 * The estimate covers the tensors that grow with the batch (attention scores, MLP hidden
 * activations, ResNet feature maps, images) and the token-embedding gradient (a scatter-add
 * output of `vocab × width`, independent of the batch). Smaller tensors cannot exceed a limit
 * that these fit.
 *
 * @module
 */
import type { ClipConfig } from "../clip/types.ts";

/** One estimated tensor of a training step. */
export interface StepTensor {
  /** What computes it, e.g. `vision attention scores (softmax)`. */
  op: string;
  /** Bytes of the tensor. */
  bytes: number;
  /** Bytes per image of the batch (0 for tensors independent of the batch). */
  perImage: number;
}

/** What a step trains and feeds, for {@link stepTensors}. */
export interface StepShape {
  /** Images per forward pass (the micro-batch with gradient accumulation). */
  batch: number;
  /** Prompts encoded per step by the text tower (classes of the task; 0 when not encoded). */
  texts?: number;
  /** Whether `token_embedding.weight` is trained (its gradient is `vocab × width`). */
  tokenEmbeddingTrained?: boolean;
}

const F32 = 4;

/** The largest tensors of one training step of `config` (float32), largest first. */
export function stepTensors(config: ClipConfig, shape: StepShape): StepTensor[] {
  const b = shape.batch;
  const out: StepTensor[] = [];
  const per = (op: string, perImage: number) =>
    out.push({ op, bytes: perImage * b, perImage: perImage });
  const r = config.imageResolution;
  per("input images", r * r * 3 * F32);
  if (config.vision === "vit") {
    const p = config.visionPatchSize ?? 16;
    const tokens = (r / p) ** 2 + 1;
    const w = config.visionWidth;
    const heads = Math.max(1, Math.round(w / 64));
    per("vision attention scores (matMul q·kᵀ, softmax)", heads * tokens * tokens * F32);
    per("vision MLP hidden (c_fc, GELU)", tokens * 4 * w * F32);
    per("vision attention in_proj (q, k, v)", tokens * 3 * w * F32);
  } else {
    const w = config.visionWidth;
    // stem: three 3×3 convs at r/2 (width/2 channels), then avg-pool to r/4
    per("ResNet stem conv (conv1–3)", (r / 2) ** 2 * (w / 2) * F32);
    // layer1 output: r/4 spatial, width·4 channels (bottleneck expansion)
    per("ResNet layer1 output", (r / 4) ** 2 * w * 4 * F32);
    const hw = (r / 32) ** 2 + 1;
    const heads = Math.max(1, Math.round((w * 32) / 64));
    per("attention pool scores", heads * hw * hw * F32);
  }
  const texts = shape.texts ?? 0;
  if (texts > 0) {
    const L = config.contextLength;
    const tw = config.transformerWidth;
    const th = config.transformerHeads;
    const fixed = (op: string, bytes: number) => out.push({ op, bytes, perImage: 0 });
    fixed("text attention scores (matMul q·kᵀ, softmax)", texts * th * L * L * F32);
    fixed("text MLP hidden (c_fc, GELU)", texts * L * 4 * tw * F32);
  }
  if (shape.tokenEmbeddingTrained) {
    out.push({
      op: "token-embedding gradient (UnsortedSegmentSum)",
      bytes: config.vocabSize * config.transformerWidth * F32,
      perImage: 0,
    });
  }
  return out.sort((x, y) => y.bytes - x.bytes);
}

/** Raised by {@link checkDeviceLimits}; carries the numbers of the message. */
export class DeviceLimitError extends Error {
  /** The op whose tensor is too large. */
  readonly op: string;
  /** Its size in bytes. */
  readonly bytes: number;
  /** The device limit in bytes. */
  readonly limit: number;
  /** Largest batch (per forward pass) that fits; 0 when no batch does. */
  readonly largestBatch: number;
  /** Build the error (see {@link checkDeviceLimits}). */
  constructor(message: string, op: string, bytes: number, limit: number, largestBatch: number) {
    super(message);
    this.name = "DeviceLimitError";
    this.op = op;
    this.bytes = bytes;
    this.limit = limit;
    this.largestBatch = largestBatch;
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/**
 * Throw a {@link DeviceLimitError} when a tensor of the step would exceed `limit` bytes.
 * `fullBatch` (default `shape.batch`) is the batch of one optimizer step, for the suggested
 * `--accum-steps`.
 *
 * @example
 * ```ts
 * import { MODEL_CONFIGS } from "jsr:@mtil/mtil/clip";
 * import { checkDeviceLimits } from "jsr:@mtil/mtil/methods";
 * checkDeviceLimits(MODEL_CONFIGS["ViT-B/16"], { batch: 64 }, 134_217_728);
 * // DeviceLimitError: vision attention scores … 119.2 MB exceeds the device's
 * // maxStorageBufferBindingSize 134.2 MB …
 * ```
 */
export function checkDeviceLimits(
  config: ClipConfig,
  shape: StepShape,
  limit: number,
  fullBatch = shape.batch,
): void {
  const tensors = stepTensors(config, shape);
  const worst = tensors.find((t) => t.bytes > limit);
  if (!worst) return;
  const fixedOver = tensors.find((t) => t.perImage === 0 && t.bytes > limit);
  let largest = Infinity;
  for (const t of tensors) {
    if (t.perImage > 0) {
      const room = limit - (t.bytes - t.perImage * shape.batch);
      largest = Math.min(largest, Math.floor(room / t.perImage));
    }
  }
  largest = fixedOver ? 0 : Math.max(0, largest);
  let advice: string;
  if (fixedOver) {
    advice = `no batch size fits: ${fixedOver.op} does not depend on the batch` +
      (fixedOver.op.startsWith("token-embedding")
        ? " (freeze the embeddings, --freeze, or use a device with a larger binding limit)"
        : " (use fewer classes per step or a device with a larger binding limit)");
  } else if (largest === 0) {
    advice = "not even one image fits: use a device with a larger binding limit";
  } else {
    const accum = Math.ceil(fullBatch / largest);
    advice = `the largest batch per pass that fits is ${largest}: use --batch-size ${largest}` +
      `, or keep batch ${fullBatch} with --accum-steps ${accum}`;
  }
  throw new DeviceLimitError(
    `${worst.op} at batch ${shape.batch} needs ${mb(worst.bytes)} (${worst.bytes} bytes), more ` +
      `than the device's maxStorageBufferBindingSize ${mb(limit)} (${limit} bytes); ${advice}`,
    worst.op,
    worst.bytes,
    limit,
    largest,
  );
}
