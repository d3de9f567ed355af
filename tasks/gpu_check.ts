/**
 * `deno task gpu-check`: on a machine with a GPU, print the WebGPU adapter, run the webgpu parity
 * tests (CLIP forward per checkpoint form, step parity, gradient accumulation, device limits,
 * memory), then time a ViT-B/16 batch-32 vision training step with
 * `deno task bench --backends webgpu` next to PyTorch on CUDA when a `python3` with CUDA torch is
 * there. Works on a software adapter (lavapipe) too: the parity tests run, the big step is
 * skipped. The logic lives in `clip/backends/webgpu.ts` and `tasks/_bench_webgpu.ts`.
 *
 * ```
 * deno task gpu-check [--no-tests] [--no-bench]
 * ```
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { describeAdapter, probeWebGpu } from "../clip/backends/webgpu.ts";

/** The webgpu parity and training tests. */
export const GPU_CHECK_TESTS: readonly string[] = [
  "clip/backends/webgpu_test.ts",
  "clip/backends/backend_test.ts",
  "clip/model_test.ts",
  "methods/parity_test.ts",
  "methods/accum_test.ts",
  "methods/evaluate_test.ts",
  "methods/device_limits_test.ts",
  "methods/webgpu_test.ts",
];

async function sh(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "inherit", stderr: "inherit" })
    .output();
  return out.code;
}

async function torchCuda(): Promise<string> {
  const script = new URL("./gpu_check_torch.py", import.meta.url).pathname;
  // Debian's python3 first (python3-torch), then whatever python3 is on PATH
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      const out = await new Deno.Command(py, { args: [script], stdout: "piped", stderr: "null" })
        .output();
      const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
      if (!out.success || !line) continue;
      const r = JSON.parse(line);
      if (r.skipped) return `PyTorch: ${r.skipped}`;
      return `PyTorch ${r.torch} on ${r.device}: ViT-B/16 vision train step b32 ` +
        `${r.vitB16TrainStep32.toFixed(3)} s (peak ${r.peakGpuMiB.toFixed(0)} MiB)`;
    } catch {
      // not there: try the next
    }
  }
  return "PyTorch: no python3 imports torch (apt-get install python3-torch, or a CUDA build)";
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "no-tests": { type: "boolean", default: false },
      "no-bench": { type: "boolean", default: false },
    },
  });
  const adapter = await probeWebGpu();
  if (!adapter) {
    console.log(
      "gpu-check: no WebGPU adapter (no GPU driver; Vulkan: mesa-vulkan-drivers / vendor)",
    );
    return 1;
  }
  console.log(`gpu-check: adapter ${describeAdapter(adapter)}`);
  const env = { MTIL_BACKEND: "webgpu" };
  let rc = 0;
  if (!values["no-tests"]) {
    const t0 = performance.now();
    rc = await sh(Deno.execPath(), ["test", "-A", ...GPU_CHECK_TESTS], env);
    console.log(
      `gpu-check: webgpu tests ${rc === 0 ? "passed" : "FAILED"} in ` +
        `${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
  }
  if (!values["no-bench"]) {
    const bench = new URL("./bench.ts", import.meta.url).pathname;
    await sh(Deno.execPath(), ["run", "-A", bench, "--backends", "webgpu", "--no-torch"]);
    console.log(`gpu-check: ${await torchCuda()}`);
  }
  return rc;
}

if (import.meta.main) Deno.exit(await main());
