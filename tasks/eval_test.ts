import { assert, assertAlmostEquals, assertEquals } from "../methods/_testing.ts";
import { runEval } from "./eval.ts";
import { randomStateDict } from "../clip/model.ts";
import { saveCheckpoint } from "../clip/formats/checkpoint.ts";
import { HAS_SHARED, sharedPath, skipWithoutShared, tinyClipConfig } from "../clip/_testing.ts";
import { wiseFt } from "../methods/ensemble.ts";
import type { ClipConfig } from "../clip/types.ts";

const CFG: ClipConfig = tinyClipConfig({
  imageResolution: 32,
  contextLength: 77,
  vocabSize: 49408,
});

if (HAS_SHARED) Deno.env.set("MTIL_BPE_PATH", sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"));

Deno.test({
  name: "deno task eval --eval-single prints the top-5; --wise-ft α=0 is the zero-shot model",
  ignore: skipWithoutShared(),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const zs = randomStateDict(CFG, 1);
    const ft = randomStateDict(CFG, 2);
    await saveCheckpoint(`${dir}/zs.safetensors`, zs);
    await saveCheckpoint(`${dir}/ft.safetensors`, ft);
    const names = ["cat", "dog", "red square", "ship", "tree", "car", "x"];
    await Deno.writeTextFile(`${dir}/classes.txt`, names.join("\n") + "\n");
    const common = [
      "--model",
      `${dir}/zs.safetensors`,
      "--eval-single",
      sharedPath("fixtures/clip/img101.png"),
      "--class-names",
      `${dir}/classes.txt`,
      "--backend",
      "wasm",
      "--quiet",
    ];
    const zero = (await runEval(common))!;
    assertEquals(zero.length, 5);
    for (let i = 1; i < 5; i++) assert(zero[i].prob <= zero[i - 1].prob, "sorted");
    assert(zero.every((t) => names.includes(t.label)));
    const loaded = (await runEval([...common, "--load", `${dir}/ft.safetensors`]))!;
    const wise0 =
      (await runEval([...common, "--load", `${dir}/ft.safetensors`, "--wise-ft", "--alpha", "0"]))!;
    const wise1 =
      (await runEval([...common, "--load", `${dir}/ft.safetensors`, "--wise-ft", "--alpha", "1"]))!;
    for (let i = 0; i < 5; i++) {
      assertEquals(wise0[i].label, zero[i].label);
      assertAlmostEquals(wise0[i].prob, zero[i].prob, 1e-6);
      assertEquals(wise1[i].label, loaded[i].label);
      assertAlmostEquals(wise1[i].prob, loaded[i].prob, 1e-6);
    }
    // and the interpolation is the one of methods/ensemble.ts
    const half = wiseFt(ft, zs, 0.5);
    await saveCheckpoint(`${dir}/half.safetensors`, half);
    const viaFile = (await runEval([...common.slice(2), "--model", `${dir}/half.safetensors`]))!;
    const viaFlag = (await runEval([
      ...common,
      "--load",
      `${dir}/ft.safetensors`,
      "--wise-ft",
      "--alpha",
      "0.5",
    ]))!;
    assertEquals(viaFlag.map((t) => t.label), viaFile.map((t) => t.label));
    await Deno.remove(dir, { recursive: true });
  },
});
