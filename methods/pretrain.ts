/**
 * Contrastive pretraining of a small CLIP from scratch on SynthMTIL image–caption pairs: the
 * embedded default model of the demo (`deno task pretrain-synth`). The loss is CLIP's symmetric
 * cross-entropy over the in-batch similarity matrix.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { ClipConfig } from "../clip/types.ts";
import { buildClip, type Clip, randomStateDict } from "../clip/model.ts";
import { WordTokenizer } from "../clip/tokenizers/word_tokenizer.ts";
import {
  SYNTH_ATTRIBUTE_NAMES,
  SYNTH_TEMPLATES,
  SYNTH_VALUES,
  synthCaptions,
} from "../datasets/synth.ts";
import { SYNTH_DOMAIN_TASKS, SYNTH_EXTRA_WORDS } from "../datasets/synth_domains.ts";
import { normalizeImage } from "../datasets/transforms.ts";
import { AdamW } from "./adamw.ts";
import { cosineLr } from "./schedule.ts";
import { ProgressBar } from "../clip/download/progress.ts";

/** Options of {@link pretrainSynthClip}. */
export interface PretrainSynthOptions {
  /** Optimizer steps (default 1000). */
  steps?: number;
  /** Image–caption pairs per step (default 64). */
  batchSize?: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** Warm-up steps (default 50). */
  warmup?: number;
  /** Weight decay (default 0.1). */
  weightDecay?: number;
  /** Seed of weights and data (default 0). */
  seed?: number;
  /** Image side (default 32). */
  imageSize?: number;
  /** Model shape overrides (see {@link synthClipConfig}). */
  config?: Partial<ClipConfig>;
  /** Show a progress bar (default true). */
  progress?: boolean;
  /** Called after every step with the step and its loss. */
  onStep?: (step: number, loss: number) => void;
}

/** The recipe of the embedded model (`deno task pretrain-synth` defaults). */
export const synthPretrainConfig: Readonly<
  Required<Pick<PretrainSynthOptions, "steps" | "batchSize" | "lr" | "warmup" | "weightDecay">>
> = { steps: 1000, batchSize: 64, lr: 1e-3, warmup: 50, weightDecay: 0.1 };

/**
 * Every word that SynthMTIL captions, prompt templates and class names use (the downstream
 * tasks' held-out class names and spare words included: they keep untrained embeddings until
 * a task teaches them), in a fixed order.
 */
export function synthVocabulary(sampleCaptions = 4000): string[] {
  const words: string[] = [];
  const add = (text: string) => {
    for (const w of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) words.push(w);
  };
  for (const attr of SYNTH_ATTRIBUTE_NAMES) {
    for (const t of SYNTH_TEMPLATES[attr]) add(t.replace("{}", ""));
    for (const v of SYNTH_VALUES[attr]) add(v);
  }
  const caps = synthCaptions({ n: sampleCaptions, seed: 12345 });
  for (let i = 0; i < caps.length; i++) add(caps.caption(i));
  for (const w of ["circles", "squares", "triangles", "crosses", "stars", "rings", "objects"]) {
    add(w);
  }
  for (const t of Object.values(SYNTH_DOMAIN_TASKS)) {
    for (const c of t.classes) add(c);
    for (const p of t.templates) add(p.replace("{}", ""));
  }
  for (const w of SYNTH_EXTRA_WORDS) add(w);
  return [...new Set(words)].sort();
}

/** The tiny ViT CLIP shape used for the embedded model. */
export function synthClipConfig(vocabSize: number, over: Partial<ClipConfig> = {}): ClipConfig {
  return {
    vision: "vit",
    embedDim: 64,
    imageResolution: 32,
    visionLayers: 2,
    visionWidth: 128,
    visionPatchSize: 8,
    contextLength: 24,
    vocabSize,
    transformerWidth: 128,
    transformerHeads: 2,
    transformerLayers: 2,
    ...over,
  };
}

/** CLIP's symmetric contrastive loss on already computed logits `[n, n]`. */
export function contrastiveLoss(logitsPerImage: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const n = logitsPerImage.shape[0];
    const labels = tf.oneHot(tf.range(0, n, 1, "int32"), n);
    const a = tf.losses.softmaxCrossEntropy(labels, logitsPerImage);
    const b = tf.losses.softmaxCrossEntropy(labels, logitsPerImage.transpose());
    return a.add(b).div(2) as tf.Scalar;
  });
}

/**
 * Train a tiny CLIP on SynthMTIL captions. Returns the model (with its word tokenizer set) and
 * the loss curve.
 */
export function pretrainSynthClip(
  options: PretrainSynthOptions = {},
): { model: Clip; tokenizer: WordTokenizer; losses: number[] } {
  const steps = options.steps ?? synthPretrainConfig.steps;
  const batchSize = options.batchSize ?? synthPretrainConfig.batchSize;
  const seed = options.seed ?? 0;
  const size = options.imageSize ?? 32;
  const tokenizer = new WordTokenizer(synthVocabulary());
  const config = synthClipConfig(tokenizer.size, { imageResolution: size, ...options.config });
  const model = buildClip(randomStateDict(config, seed), { config });
  model.tokenizer = tokenizer;
  const trainable = new Map(
    [...model.params].filter(([k, v]) => v.trainable && k !== "logit_scale"),
  );
  // logit_scale learns too (as in CLIP pretraining), clamped to ln(100).
  const logitScale = model.params.get("logit_scale")!;
  trainable.set("logit_scale", logitScale);
  const lr = options.lr ?? synthPretrainConfig.lr;
  const opt = new AdamW({
    lr,
    weightDecay: options.weightDecay ?? synthPretrainConfig.weightDecay,
    beta2: 0.98,
  });
  const schedule = cosineLr(lr, options.warmup ?? synthPretrainConfig.warmup, steps);
  const data = synthCaptions({ n: steps * batchSize, seed: seed + 1, size });
  const bar = options.progress === false
    ? undefined
    : new ProgressBar({ total: steps, label: "pretrain", unit: "step" });
  const losses: number[] = [];
  const pix = size * size * 3;
  for (let step = 0; step < steps; step++) {
    const imgs = new Float32Array(batchSize * pix);
    const caps: string[] = [];
    for (let b = 0; b < batchSize; b++) {
      const item = data.item(step * batchSize + b);
      normalizeImage(item.image, {}, imgs, b * pix);
      caps.push(item.caption);
    }
    opt.lr = schedule(step);
    const lossValue = tf.tidy(() => {
      const images = tf.tensor4d(imgs, [batchSize, size, size, 3]);
      const tokens = tokenizer.tokenize(caps, {
        contextLength: config.contextLength,
        truncate: true,
      });
      const vars = [...trainable.values()];
      const names = [...trainable.keys()];
      const { value, grads } = tf.variableGrads(
        () => contrastiveLoss(model.forward(images, tokens).logitsPerImage),
        vars,
      );
      const g = new Map<string, tf.Tensor>();
      for (const [i, n] of names.entries()) {
        const gi = grads[vars[i].name];
        if (gi) g.set(n, gi);
      }
      opt.step(trainable, g);
      logitScale.assign(tf.clipByValue(logitScale, 0, Math.log(100)));
      return value.dataSync()[0];
    });
    losses.push(lossValue);
    options.onStep?.(step, lossValue);
    bar?.tick(1, { loss: lossValue.toFixed(3), lr: opt.lr.toExponential(2) });
  }
  bar?.done();
  opt.dispose();
  return { model, tokenizer, losses };
}
