/**
 * The webgpu backend in training: memory stays flat, device errors end a step unapplied, the
 * backend line names the adapter. Runs wherever a WebGPU adapter loads (CI: Mesa's lavapipe);
 * skipped loudly elsewhere.
 */
import { methodParts } from "./_testing.ts";
import { tf } from "../clip/backends/tf.ts";
import { availableBackends, backendReport, initBackend } from "../clip/backends/backend.ts";
import { deviceStorageLimit, webGpuAdapter } from "../clip/backends/webgpu.ts";
import { buildClip, randomStateDict } from "../clip/model.ts";
import type { ClipConfig } from "../clip/types.ts";
import { assert, assertEquals, TINY } from "./_testing.ts";
import "./presets.ts";
import { createRun, DeviceStepError, disposeRun, runSteps, type TrainTask } from "./train.ts";
import { readTrainState, saveTrainState } from "./state.ts";

const HAS_WEBGPU = (await availableBackends({ includeByName: true })).includes("webgpu");
if (!HAS_WEBGPU) {
  console.warn(
    "%cSKIPPING webgpu training tests: no WebGPU adapter (apt-get install mesa-vulkan-drivers)",
    "color: red; font-weight: bold",
  );
}

function tokens(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(
    rows.map((r) => {
      const t = [30, ...r, 31];
      while (t.length < TINY.contextLength) t.push(0);
      return t;
    }),
    undefined,
    "int32",
  );
}

/** A tiny ModifiedResNet CLIP (BatchNorm in training mode). */
const TINY_RN: ClipConfig = {
  ...TINY,
  vision: "resnet",
  imageResolution: 64,
  visionLayers: [1, 1, 1, 1],
  visionWidth: 8,
  visionPatchSize: undefined,
};

function tinyTask(res = 16): TrainTask {
  return {
    name: "webgpu",
    classnames: ["a", "b"],
    textTokens: tokens([[1, 2], [3]]),
    batch: (s) =>
      Promise.resolve({
        images: tf.randomNormal([2, res, res, 3], 0, 1, "float32", s) as tf.Tensor4D,
        labels: [s % 2, (s + 1) % 2],
      }),
  };
}

async function onWebGpu(fn: () => Promise<void>): Promise<void> {
  await tf.ready();
  const before = tf.getBackend();
  await initBackend({ prefer: "webgpu", quiet: true });
  assertEquals(tf.getBackend(), "webgpu");
  try {
    await fn();
  } finally {
    await tf.setBackend(before);
  }
}

Deno.test({
  name: "webgpu: the backend line names the adapter, fallback or not, and its buffer limits",
  ignore: !HAS_WEBGPU,
  fn: () =>
    onWebGpu(async () => {
      const line = backendReport().find((s) => s.name === "webgpu")!;
      assertEquals(line.state, "active");
      for (const s of ["vendor", "architecture", "adapter", "max storage binding", "max buffer"]) {
        assert(line.detail.includes(s), `"${s}" missing in: ${line.detail}`);
      }
      // the device got the adapter's maximum limits (tfjs 4.22 alone asks for six of them)
      const device = (tf.backend() as unknown as { device: GPUDevice }).device;
      const adapter = webGpuAdapter()!;
      assertEquals(device.limits.maxStorageBufferBindingSize, adapter.maxStorageBufferBindingSize);
      assertEquals(device.limits.maxBufferSize, adapter.maxBufferSize);
      assertEquals(deviceStorageLimit(), adapter.maxStorageBufferBindingSize);
      // and the ones it never asks for (WebGPU's default for this one is 8)
      const fresh = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
      assertEquals(
        device.limits.maxStorageBuffersPerShaderStage,
        fresh.limits.maxStorageBuffersPerShaderStage,
      );
    }),
});

Deno.test({
  name: "webgpu: tf.memory() bytes and tensors stay flat over 200 ZSCL steps (tiny ViT)",
  ignore: !HAS_WEBGPU,
  fn: () =>
    onWebGpu(async () => {
      const model = buildClip(randomStateDict(TINY, 11));
      const task = tinyTask();
      const refTexts = tokens([[4], [5, 6], [7]]);
      type Mem = { numTensors: number; numBytes: number; numBytesInGPU?: number };
      const snaps: Mem[] = [];
      const run = await createRun(model, task, {
        iterations: 200,
        lr: 1e-4,
        warmupLength: 10,
        finalStep: false,
        parts: methodParts("ZSCL", {
          labelSmoothing: 0.1,
          we: true,
          avgFreq: 5,
          T: 2,
          refTexts,
          refImages: (s: number) =>
            Promise.resolve(tf.randomNormal([3, 16, 16, 3], 0, 1, "float32", 1000 + s)),
        }),
        onStep: (rec) => {
          if (rec.step === 19 || rec.step === 199) snaps.push(tf.memory() as Mem);
        },
      });
      const t0 = performance.now();
      await runSteps(run);
      const ms = (performance.now() - t0) / 200;
      console.log(
        `webgpu ZSCL: ${ms.toFixed(0)} ms/step; step 20 → 200: tensors ${snaps[0].numTensors} → ` +
          `${snaps[1].numTensors}, bytes ${snaps[0].numBytes} → ${snaps[1].numBytes}, GPU bytes ` +
          `${snaps[0].numBytesInGPU} → ${snaps[1].numBytesInGPU}`,
      );
      assertEquals(snaps[1].numTensors, snaps[0].numTensors, "tensor count grew");
      assertEquals(snaps[1].numBytes, snaps[0].numBytes, "bytes grew");
      assertEquals(snaps[1].numBytesInGPU, snaps[0].numBytesInGPU, "GPU bytes grew");
      disposeRun(run);
      tf.dispose([task.textTokens, refTexts]);
      model.dispose();
    }),
});

for (const vision of ["vit", "resnet"] as const) {
  Deno.test({
    name:
      `webgpu: a device error inside a step ends it unapplied (${vision}), with a batch split that fits`,
    ignore: !HAS_WEBGPU,
    fn: () =>
      onWebGpu(async () => {
        const config = vision === "vit" ? TINY : TINY_RN;
        const model = buildClip(randomStateDict(config, 11));
        const task = tinyTask(config.imageResolution);
        const device = (tf.backend() as unknown as { device: GPUDevice }).device;
        const before = new Map<string, number[]>();
        for (const [k, v] of model.params) before.set(k, Array.from(await v.data()));
        const run = await createRun(model, task, {
          iterations: 1,
          finalStep: false,
          parts: [...methodParts("finetune"), {
            name: "bad-allocation",
            loss(ctx) {
              // a buffer over maxBufferSize: WebGPU reports it only through an error scope
              device.createBuffer({
                size: device.limits.maxBufferSize + 4,
                usage: GPUBufferUsage.STORAGE,
              });
              return { zero: { value: tf.mul(ctx.logitScale, 0) as tf.Scalar, weight: 1 } };
            },
          }],
        });
        let err: unknown;
        try {
          await runSteps(run);
        } catch (e) {
          err = e;
        }
        assert(err instanceof DeviceStepError, String(err));
        assert(
          err.message.includes("step 0") && err.message.includes("--accum-steps 2"),
          err.message,
        );
        // what a CLI does on such an error: save the state, resumable at the failed step
        const dir = await Deno.makeTempDir({ prefix: "webgpu_oom_" });
        try {
          await saveTrainState(`${dir}/state.safetensors`, run);
          const { meta, stateDict } = await readTrainState(`${dir}/state.safetensors`);
          assertEquals(meta.step, err.step);
          const key = "logit_scale";
          assertEquals(Array.from(stateDict.get(`model.${key}`)!.data), before.get(key));
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
        disposeRun(run);
        for (const [k, v] of model.params) {
          assertEquals(Array.from(await v.data()), before.get(k), `${k} changed`);
        }
        task.textTokens.dispose();
        model.dispose();
      }),
  });
}

Deno.test({
  name: "webgpu: LoRA adapters with OGD (snapshots, then projection) train with no sync read",
  ignore: !HAS_WEBGPU,
  fn: () =>
    onWebGpu(async () => {
      const { injectLora, removeLora } = await import("../lora/lora.ts");
      const { ogdPart } = await import("../ogd/part.ts");
      const dir = await Deno.makeTempDir({ prefix: "webgpu_ogd_" });
      const model = buildClip(randomStateDict(TINY, 11));
      const task = tinyTask();
      const lora = injectLora(model, { r: 2, dropout: 0 });
      const extraParams = new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v]));
      const start = tf.memory().numTensors;
      try {
        // task 1: record snapshots and write the basis
        const track = (n: string) => n.startsWith("lora.");
        const ogd1 = ogdPart({ snapshots: 3, saveDir: dir, track });
        const run1 = await createRun(model, task, {
          iterations: 4,
          lr: 1e-3,
          finalStep: false,
          onlyExtra: true,
          extraParams,
          parts: [...methodParts("finetune", { labelSmoothing: 0.1, we: true, avgFreq: 2 }), ogd1],
        });
        await runSteps(run1);
        disposeRun(run1);
        assert(ogd1.savedPath !== undefined, "basis written");
        // task 2: project the adapters' gradients against it
        const ogd2 = ogdPart({ basisPaths: [ogd1.savedPath!], track });
        const run2 = await createRun(model, task, {
          iterations: 3,
          lr: 1e-3,
          finalStep: false,
          onlyExtra: true,
          extraParams,
          parts: [...methodParts("finetune"), ogd2],
        });
        const r = await runSteps(run2);
        disposeRun(run2);
        assertEquals(r.records.length, 3);
        assert(r.records.every((x) => Number.isFinite(x.losses.total)), "finite losses");
        assert(ogd2.tracked.length > 0, "adapters tracked");
        // the merged checkpoint (what the train CLI saves with LoRA) reads asynchronously
        const { mergedStateDictAsync } = await import("../lora/lora.ts");
        const sd = await mergedStateDictAsync(model, lora);
        assertEquals(sd.size, model.params.size);
        const key = lora.adapters[0].weightKey;
        const base = await model.params.get(key)!.data();
        const merged = sd.get(key)!.data as Float32Array;
        assert(merged.some((x, i) => x !== base[i]), "trained adapters change the merged weight");
      } finally {
        removeLora(model, lora);
        task.textTokens.dispose();
        model.dispose();
        await Deno.remove(dir, { recursive: true });
      }
      assert(tf.memory().numTensors <= start, "tensors leaked");
    }),
});
