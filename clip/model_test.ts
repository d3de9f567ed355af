import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  maxAbsDiff,
  parityBackends,
  readF32,
  sharedPath,
  skipWithoutShared,
  tinyClipConfig,
} from "./_testing.ts";
import { tf } from "./backends/tf.ts";
import { readCheckpoint } from "./formats/checkpoint.ts";
import { availableBackends, initBackend } from "./backends/backend.ts";
import { readableOnHost } from "./backends/webgpu.ts";
import {
  buildClip,
  type Clip,
  inferConfig,
  isBuffer,
  linearModulePaths,
  MODEL_CONFIGS,
  randomStateDict,
  stateDictShapes,
} from "./model.ts";
import type { ClipConfig } from "./types.ts";
import { numel, type StateDict } from "./formats/state_dict.ts";

interface Expected {
  config: Record<string, unknown>;
  checkpoint: string;
  tokens: number[][];
  images: { file: string; shape: number[] };
  image_features: { file: string; shape: number[] };
  text_features: { file: string; shape: number[] };
  logits_per_image: { file: string; shape: number[] };
  state_dict_keys: Record<string, number[]>;
}

const FIXTURES = ["vit-tiny", "rn-tiny", "vit-tiny-zscl"];

function expected(name: string): Expected {
  return JSON.parse(Deno.readTextFileSync(sharedPath(`fixtures/clip/${name}.expected.json`)));
}

/** The fixture's NCHW images as NHWC. */
function fixtureImages(exp: Expected): tf.Tensor4D {
  return tf.tidy(() =>
    tf.transpose(
      tf.tensor4d(readF32(`fixtures/clip/${exp.images.file}`), exp.images.shape as never),
      [0, 2, 3, 1],
    )
  );
}

async function fixtureModel(exp: Expected): Promise<Clip> {
  const { stateDict } = await readCheckpoint(sharedPath(`fixtures/clip/${exp.checkpoint}`));
  return buildClip(stateDict);
}

/** The reference `build_model` config (snake_case) in our form. */
function refConfig(c: Record<string, unknown>): ClipConfig {
  const out: ClipConfig = {
    vision: Array.isArray(c.vision_layers) ? "resnet" : "vit",
    embedDim: c.embed_dim as number,
    imageResolution: c.image_resolution as number,
    visionLayers: c.vision_layers as number | number[],
    visionWidth: c.vision_width as number,
    contextLength: c.context_length as number,
    vocabSize: c.vocab_size as number,
    transformerWidth: c.transformer_width as number,
    transformerHeads: c.transformer_heads as number,
    transformerLayers: c.transformer_layers as number,
  };
  if (c.vision_patch_size != null) out.visionPatchSize = c.vision_patch_size as number;
  return out;
}

/** A tiny config for fast tests (width 64 = one head per tower). */
const TINY_VIT: ClipConfig = tinyClipConfig({ visionLayers: 2 });
const TINY_RN: ClipConfig = {
  ...TINY_VIT,
  vision: "resnet",
  imageResolution: 64,
  visionLayers: [1, 2, 1, 1],
  visionWidth: 8,
  visionPatchSize: undefined,
};
delete TINY_RN.visionPatchSize;

/**
 * Backends of the per-fixture parity tests: cpu and cpu-dnnl (where oneDNN loads), plus webgpu
 * where an adapter loads (CI: lavapipe).
 */
const FORWARD_BACKENDS = await parityBackends(["cpu", "cpu-dnnl"]);

for (const name of FIXTURES) {
  for (const backend of FORWARD_BACKENDS) {
    Deno.test({
      name: `parity with PyTorch CLIP: ${name} on ${backend}`,
      ignore: skipWithoutShared(),
      fn: async () => {
        await tf.ready();
        const before = tf.getBackend();
        await initBackend({ prefer: backend, quiet: true });
        assertEquals(tf.getBackend(), backend);
        try {
          await forwardParity(name);
        } finally {
          await tf.setBackend(before);
        }
      },
    });
  }
}

async function forwardParity(name: string): Promise<void> {
  const exp = expected(name);
  const model = await fixtureModel(exp);
  assertEquals(model.config, refConfig(exp.config));
  const images = fixtureImages(exp);
  const tokens = tf.tensor2d(exp.tokens, undefined, "int32");
  const img = model.encodeImage(images);
  const txt = model.encodeText(tokens);
  const { logitsPerImage, logitsPerText } = model.forward(images, tokens);
  assertEquals(img.shape, exp.image_features.shape);
  assertEquals(txt.shape, exp.text_features.shape);
  // asynchronous reads: webgpu cannot read synchronously
  const e1 = maxAbsDiff(await img.data(), readF32(`fixtures/clip/${exp.image_features.file}`));
  const e2 = maxAbsDiff(await txt.data(), readF32(`fixtures/clip/${exp.text_features.file}`));
  const e3 = maxAbsDiff(
    await logitsPerImage.data(),
    readF32(`fixtures/clip/${exp.logits_per_image.file}`),
  );
  assert(e1 <= 1e-4, `image features max abs error ${e1}`);
  assert(e2 <= 1e-4, `text features max abs error ${e2}`);
  assert(e3 <= 1e-3, `logits max abs error ${e3}`);
  const transposed = tf.transpose(logitsPerImage);
  assertEquals(Array.from(await logitsPerText.data()), Array.from(await transposed.data()));
  // state-dict keys, order and shapes equal the reference's
  await readableOnHost(model.params.values());
  const sd = model.stateDict();
  assertEquals([...sd].map(([k, v]) => [k, v.shape]), Object.entries(exp.state_dict_keys));
  assertEquals(
    stateDictShapes(model.config).map((e) => [e.key, e.shape]),
    Object.entries(exp.state_dict_keys),
  );
  tf.dispose([images, tokens, img, txt, logitsPerImage, logitsPerText, transposed]);
  model.dispose();
}

Deno.test({
  name: "parity on every backend that loads here",
  ignore: skipWithoutShared(),
  fn: async () => {
    await tf.ready();
    const original = tf.getBackend();
    const backends = await availableBackends();
    assert(backends.includes("cpu"));
    try {
      for (const backend of backends) {
        assert(await tf.setBackend(backend), `setBackend(${backend})`);
        for (const name of ["vit-tiny", "rn-tiny"]) {
          const exp = expected(name);
          const model = await fixtureModel(exp);
          const images = fixtureImages(exp);
          const tokens = tf.tensor2d(exp.tokens, undefined, "int32");
          const img = model.encodeImage(images);
          const txt = model.encodeText(tokens);
          const e1 = maxAbsDiff(
            await img.data(),
            readF32(`fixtures/clip/${exp.image_features.file}`),
          );
          const e2 = maxAbsDiff(
            await txt.data(),
            readF32(`fixtures/clip/${exp.text_features.file}`),
          );
          assert(e1 <= 1e-4 && e2 <= 1e-4, `${backend} ${name}: errors ${e1}, ${e2}`);
          tf.dispose([images, tokens, img, txt]);
          model.dispose();
        }
      }
    } finally {
      await tf.setBackend(original);
    }
  },
});

Deno.test({
  name: "round trip: stateDict → buildClip gives identical outputs; loadStateDict restores",
  ignore: skipWithoutShared(),
  fn: async () => {
    const exp = expected("rn-tiny");
    const a = await fixtureModel(exp);
    const b = buildClip(a.stateDict());
    const images = fixtureImages(exp);
    const fa = a.encodeImage(images), fb = b.encodeImage(images);
    assertEquals(Array.from(fa.dataSync()), Array.from(fb.dataSync()));
    // perturb b, then load a's weights back
    const c = buildClip(randomStateDict(a.config, 7));
    const fc = c.encodeImage(images);
    assert(maxAbsDiff(fa.dataSync(), fc.dataSync()) > 1e-3);
    c.loadStateDict(a.stateDict());
    const fc2 = c.encodeImage(images);
    assertEquals(Array.from(fa.dataSync()), Array.from(fc2.dataSync()));
    assertEquals(c.stateDict().get("visual.bn1.num_batches_tracked")?.dtype, "int64");
    tf.dispose([images, fa, fb, fc, fc2]);
    a.dispose();
    b.dispose();
    c.dispose();
  },
});

Deno.test("inferConfig recovers each of the nine OpenAI configs from shapes alone", () => {
  for (const [name, config] of Object.entries(MODEL_CONFIGS)) {
    const shapes = new Map(stateDictShapes(config).map((e) => [e.key, e]));
    // the released TorchScript files also carry these non-parameter entries
    for (const k of ["input_resolution", "context_length", "vocab_size"]) {
      shapes.set(k, { key: k, shape: [], kind: "bias" });
    }
    assertEquals(inferConfig(shapes), config, name);
  }
});

Deno.test("parameter counts of released models equal the published ones", () => {
  // The CLIP README notebook prints these (`sum(p.numel() for p in model.parameters())`).
  const count = (c: ClipConfig) =>
    stateDictShapes(c).filter((e) => !isBuffer(e.kind)).reduce((s, e) => s + numel(e.shape), 0);
  assertEquals(count(MODEL_CONFIGS["RN50"]), 102_007_137);
  assertEquals(count(MODEL_CONFIGS["ViT-B/32"]), 151_277_313);
  assertEquals(count(MODEL_CONFIGS["ViT-B/16"]), 149_620_737);
  assertEquals(count(MODEL_CONFIGS["ViT-L/14"]), 427_616_513);
});

Deno.test("randomStateDict: exact keys, deterministic in the seed, inferConfig round trip", () => {
  for (const c of [TINY_VIT, TINY_RN]) {
    const a = randomStateDict(c, 1), b = randomStateDict(c, 1), d = randomStateDict(c, 2);
    assertEquals([...a.keys()], stateDictShapes(c).map((e) => e.key));
    assertEquals(inferConfig(a), c);
    const k = "transformer.resblocks.0.mlp.c_fc.weight";
    assertEquals(a.get(k)!.data, b.get(k)!.data);
    assert(maxAbsDiff(a.get(k)!.data, d.get(k)!.data) > 0);
    // fan-in scaling: std of c_fc (fan-in 64) ≈ 1/8
    const w = Array.from(a.get(k)!.data);
    const std = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
    assert(Math.abs(std - 0.125) < 0.01, `std ${std}`);
  }
});

Deno.test("variables: reference keys, unique tfjs names, buffers non-trainable", () => {
  const a = buildClip(randomStateDict(TINY_RN));
  const b = buildClip(randomStateDict(TINY_RN));
  const v = a.params.get("visual.bn1.running_mean")!;
  assert(!v.trainable);
  assert(!a.params.get("visual.bn1.num_batches_tracked")!.trainable);
  assertEquals(a.params.get("visual.bn1.num_batches_tracked")!.dtype, "int32");
  assert(a.params.get("logit_scale")!.trainable);
  assertEquals(v.name, `m${a.id}/visual.bn1.running_mean`);
  assert(a.params.get("logit_scale")!.name !== b.params.get("logit_scale")!.name);
  assertEquals(a.params.get("visual.conv1.weight")!.shape, [4, 3, 3, 3]); // OIHW kept
  a.dispose();
  b.dispose();
});

Deno.test("buildClip / loadStateDict reject wrong keys and shapes with clear errors", () => {
  const sd = randomStateDict(TINY_VIT);
  const extra: StateDict = new Map(sd);
  extra.set("visual.bogus", { shape: [1], dtype: "float32", data: new Float32Array(1) });
  throws(() => buildClip(extra), /unexpected \[visual\.bogus\]/);
  const missing: StateDict = new Map(sd);
  missing.delete("ln_final.bias");
  throws(() => buildClip(missing), /missing \[ln_final\.bias\]/);
  const before = tf.memory().numTensors;
  const m = buildClip(missing, { strict: false });
  assertEquals(Array.from(m.params.get("ln_final.bias")!.dataSync()), new Array(64).fill(0));
  throws(() => m.loadStateDict(missing), /missing \[ln_final\.bias\]/);
  m.loadStateDict(missing, { strict: false });
  const bad: StateDict = new Map(sd);
  bad.set("visual.proj", { shape: [32, 16], dtype: "float32", data: new Float32Array(512) });
  throws(() => m.loadStateDict(bad), /shape mismatch for "visual\.proj"/);
  m.dispose();
  assertEquals(tf.memory().numTensors, before);
});

Deno.test("encodeImage / encodeText / forward do not leak tensors", () => {
  for (const c of [TINY_VIT, TINY_RN]) {
    const m = buildClip(randomStateDict(c, 3));
    const images = tf.randomNormal([2, c.imageResolution, c.imageResolution, 3]) as tf.Tensor4D;
    const tokens = tf.tensor2d(
      [[1, 5, 49, 0, 0, 0, 0, 0], [1, 49, 0, 0, 0, 0, 0, 0]],
      undefined,
      "int32",
    );
    const run = () => {
      tf.dispose([m.encodeImage(images), m.encodeText(tokens)]);
      const { logitsPerImage, logitsPerText } = m.forward(images, tokens);
      tf.dispose([logitsPerImage, logitsPerText]);
    };
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    m.training = true;
    run();
    assertEquals(tf.memory().numTensors, before);
    tf.dispose([images, tokens]);
    m.dispose();
  }
});

Deno.test("text features are taken at the argmax token (end of text)", () => {
  const m = buildClip(randomStateDict(TINY_VIT, 4));
  // the causal mask: tokens after the EOT position cannot change the features
  const a = tf.tensor2d([[1, 7, 49, 3, 0, 0, 0, 0]], undefined, "int32");
  const b = tf.tensor2d([[1, 7, 49, 9, 9, 9, 2, 2]], undefined, "int32");
  const c = tf.tensor2d([[1, 8, 49, 3, 0, 0, 0, 0]], undefined, "int32");
  const [fa, fb, fc] = [a, b, c].map((t) => m.encodeText(t));
  assert(maxAbsDiff(fa.dataSync(), fb.dataSync()) < 1e-6);
  assert(maxAbsDiff(fa.dataSync(), fc.dataSync()) > 1e-4);
  tf.dispose([a, b, c, fa, fb, fc]);
  m.dispose();
});

Deno.test("dense hooks add to every projection; linearPaths lists the modules", () => {
  const sd = randomStateDict(TINY_VIT, 5);
  const m = buildClip(sd);
  assertEquals(m.linearPaths(), [
    "visual.transformer.resblocks.0.attn.out_proj",
    "visual.transformer.resblocks.0.mlp.c_fc",
    "visual.transformer.resblocks.0.mlp.c_proj",
    "visual.transformer.resblocks.1.attn.out_proj",
    "visual.transformer.resblocks.1.mlp.c_fc",
    "visual.transformer.resblocks.1.mlp.c_proj",
    "transformer.resblocks.0.attn.out_proj",
    "transformer.resblocks.0.mlp.c_fc",
    "transformer.resblocks.0.mlp.c_proj",
  ]);
  assertEquals(linearModulePaths(TINY_VIT), m.linearPaths());
  assertEquals(m.attentionPaths(), [
    "visual.transformer.resblocks.0.attn",
    "visual.transformer.resblocks.1.attn",
    "transformer.resblocks.0.attn",
  ]);
  const rn = buildClip(randomStateDict(TINY_RN, 5));
  assertEquals(rn.linearPaths().slice(0, 4), [
    "visual.attnpool.k_proj",
    "visual.attnpool.q_proj",
    "visual.attnpool.v_proj",
    "visual.attnpool.c_proj",
  ]);
  const images = tf.randomNormal([2, 16, 16, 3], 0, 1, "float32", 1) as tf.Tensor4D;
  // a hook x·Dᵀ equals adding D to the weight, for the packed attn and for a plain Linear
  for (
    const [path, key] of [
      ["visual.transformer.resblocks.1.attn", "visual.transformer.resblocks.1.attn.in_proj_weight"],
      ["visual.transformer.resblocks.0.mlp.c_fc", "visual.transformer.resblocks.0.mlp.c_fc.weight"],
      [
        "visual.transformer.resblocks.0.attn.out_proj",
        "visual.transformer.resblocks.0.attn.out_proj.weight",
      ],
    ]
  ) {
    const w = sd.get(key)!;
    const delta = tf.randomNormal(
      w.shape as [number, number],
      0,
      0.05,
      "float32",
      2,
    ) as tf.Tensor2D;
    const deltaT = tf.transpose(delta);
    const base = m.encodeImage(images);
    m.denseHooks.set(path, (x) => tf.matMul(x as tf.Tensor2D, deltaT as tf.Tensor2D));
    const hooked = m.encodeImage(images);
    m.denseHooks.clear();
    const merged = new Map(sd);
    const d = delta.dataSync();
    merged.set(key, { ...w, data: (w.data as Float32Array).map((v, i) => v + d[i]) });
    const m2 = buildClip(merged);
    const ref = m2.encodeImage(images);
    assert(maxAbsDiff(base.dataSync(), hooked.dataSync()) > 1e-3, `${path} hook had no effect`);
    assert(maxAbsDiff(ref.dataSync(), hooked.dataSync()) < 1e-4, `${path} hook ≠ merged weight`);
    tf.dispose([delta, deltaT, base, hooked, ref]);
    m2.dispose();
  }
  tf.dispose(images);
  m.dispose();
  rn.dispose();
});

Deno.test("gradients flow through both towers; training BatchNorm updates running stats", () => {
  for (const c of [TINY_VIT, TINY_RN]) {
    const m = buildClip(randomStateDict(c, 6));
    m.training = true;
    const images = tf.randomNormal([2, c.imageResolution, c.imageResolution, 3]) as tf.Tensor4D;
    const tokens = tf.tensor2d(
      [[1, 5, 49, 0, 0, 0, 0, 0], [1, 49, 0, 0, 0, 0, 0, 0]],
      undefined,
      "int32",
    );
    const vars = [...m.params.values()].filter((v) => v.trainable);
    const { value, grads } = tf.variableGrads(() => {
      const { logitsPerImage, logitsPerText } = m.forward(images, tokens);
      return tf.add(tf.mean(tf.square(logitsPerImage)), tf.mean(logitsPerText)) as tf.Scalar;
    }, vars);
    assert(Number.isFinite(value.dataSync()[0]));
    for (const key of ["visual.conv1.weight", "token_embedding.weight", "logit_scale"]) {
      const g = grads[m.params.get(key)!.name];
      assert(g, `no gradient for ${key}`);
      const gd = g.dataSync();
      assert(gd.every(Number.isFinite), `non-finite gradient for ${key}`);
      assert(gd.some((x) => x !== 0), `zero gradient for ${key}`);
    }
    if (c.vision === "resnet") {
      assertEquals(Array.from(m.params.get("visual.bn1.num_batches_tracked")!.dataSync()), [1]);
      const rm = m.params.get("visual.layer1.0.bn2.running_mean")!.dataSync();
      assert(rm.some((x) => x !== 0), "running_mean not updated");
    }
    tf.dispose([value, images, tokens, ...Object.values(grads)]);
    m.dispose();
  }
});
