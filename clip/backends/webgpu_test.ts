import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import { tf } from "./tf.ts";
import { availableBackends, backendReport, initBackend, nodeImportError } from "./backend.ts";
import { describeAdapter, probeWebGpu, readableOnHost } from "./webgpu.ts";

const ADAPTER = await probeWebGpu();
const HAS = (await availableBackends({ includeByName: true })).includes("webgpu");
if (!HAS) {
  console.warn(
    "%cSKIPPING webgpu backend tests: no WebGPU adapter (apt-get install mesa-vulkan-drivers)",
    "color: red; font-weight: bold",
  );
}

Deno.test("tfjs-node skip reasons say precisely what is missing", () => {
  const binding = nodeImportError(
    "tfjs-node-gpu",
    new Error("The specified module could not be found: tfjs_binding.node"),
  );
  assert(binding.includes("install script") && binding.includes("--allow-scripts"), binding);
  const cuda = nodeImportError(
    "tfjs-node-gpu",
    new Error("libcudart.so.11.0: cannot open shared object file: No such file or directory"),
  );
  assert(cuda.includes("libcudart.so.11.0") && cuda.includes("CUDA 11.2"), cuda);
  const cudnn = nodeImportError("tfjs-node-gpu", new Error("libcudnn.so.8: cannot open"));
  assert(cudnn.includes("cuDNN 8.1"), cudnn);
});

Deno.test("describeAdapter names vendor, architecture, description, fallback and limits", () => {
  const line = describeAdapter({
    vendor: "nvidia",
    architecture: "hopper",
    description: "NVIDIA H200",
    fallback: false,
    maxStorageBufferBindingSize: 2 ** 31,
    maxBufferSize: 2 ** 34,
  });
  for (const s of ["NVIDIA H200", "vendor nvidia", "architecture hopper", "hardware adapter"]) {
    assert(line.includes(s), line);
  }
  assert(line.includes("max storage binding 2048 MiB") && line.includes("max buffer 16384 MiB"));
});

Deno.test({
  name: "webgpu: a fallback adapter is skipped by the automatic choice, taken when asked for",
  ignore: !HAS,
  fn: async () => {
    const before = Deno.env.get("MTIL_BACKEND");
    Deno.env.delete("MTIL_BACKEND");
    try {
      const auto = await initBackend({ quiet: true });
      const line = backendReport().find((s) => s.name === "webgpu")!;
      if (ADAPTER!.fallback) {
        assert(auto !== "webgpu");
        assertEquals(line.state, "skipped");
        assert(line.detail.includes("fallback adapter"), line.detail);
        assert(!(await availableBackends()).includes("webgpu"));
      }
      assertEquals(await initBackend({ prefer: "webgpu", quiet: true }), "webgpu");
      const active = backendReport().find((s) => s.name === "webgpu")!;
      assertEquals(active.state, "active");
      assert(active.detail.includes(ADAPTER!.description), active.detail);
    } finally {
      if (before !== undefined) Deno.env.set("MTIL_BACKEND", before);
      await initBackend({ prefer: "cpu", quiet: true });
    }
  },
});

Deno.test({
  name: "webgpu: a synchronous read says to read asynchronously; readableOnHost makes it work",
  ignore: !HAS,
  fn: async () => {
    await initBackend({ prefer: "webgpu", quiet: true });
    try {
      const a = tf.tidy(() => tf.matMul(tf.ones([4, 4]), tf.ones([4, 4])));
      throws(() => a.dataSync(), /await tensor\.data\(\)/);
      await readableOnHost([a]);
      assertEquals(Array.from(a.dataSync()).slice(0, 2), [4, 4]);
      a.dispose();
      // the small-tensor CPU forwarding is off: every op runs on the device
      assertEquals(tf.env().getBool("WEBGPU_CPU_FORWARD"), false);
    } finally {
      await initBackend({ prefer: "cpu", quiet: true });
    }
  },
});
