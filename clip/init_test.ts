import { assert, assertEquals } from "../methods/_testing.ts";
import { tinyClipConfig } from "./_testing.ts";
import { buildClip, randomStateDict } from "./model.ts";
import type { ClipConfig } from "./types.ts";
import { initRule, reinitializeClip } from "./init.ts";

const VIT: ClipConfig = tinyClipConfig({ visionLayers: 2, transformerLayers: 2 });
const RN: ClipConfig = {
  ...VIT,
  vision: "resnet",
  imageResolution: 64,
  visionLayers: [1, 1, 1, 1],
  visionWidth: 8,
  visionPatchSize: undefined,
};

function stats(d: Float32Array): { mean: number; std: number } {
  let s = 0, q = 0;
  for (const x of d) (s += x, q += x * x);
  const mean = s / d.length;
  return { mean, std: Math.sqrt(q / d.length - mean * mean) };
}

for (const config of [VIT, RN]) {
  Deno.test(`reinitializeClip (--untrained) follows the reference's rules: ${config.vision}`, () => {
    const sd = randomStateDict(config, 3);
    const model = buildClip(sd);
    const { reset, kept } = reinitializeClip(model, 1);
    assert(reset > 0 && kept > 0, `reset ${reset}, kept ${kept}`);
    const big: Float32Array[] = [];
    for (const [k, v] of model.params) {
      const now = v.dataSync() as Float32Array;
      const before = sd.get(k)!.data;
      const rule = initRule(k, v.shape);
      if (rule.kind === "keep") {
        assert(now.every((x, i) => x === before[i]), `${k} must keep its loaded value`);
      } else if (rule.kind === "constant") {
        assert(now.every((x) => x === rule.value), `${k} must be ${rule.value}`);
      } else if (now.length >= 4096) {
        const s = stats(now);
        assert(Math.abs(s.std - rule.std) < 0.1 * rule.std, `${k}: std ${s.std} vs ${rule.std}`);
        big.push(now);
      }
    }
    assert(big.length > 0, "some large tensors were checked");
    // named cases of the rules
    assertEquals(initRule("logit_scale", []), { kind: "constant", value: 0 });
    assertEquals(initRule("ln_final.weight", [64]), { kind: "constant", value: 1 });
    assertEquals(initRule("transformer.resblocks.0.attn.out_proj.bias", [64]), {
      kind: "constant",
      value: 0,
    });
    assertEquals(initRule("transformer.resblocks.0.attn.in_proj_weight", [192, 64]), {
      kind: "keep",
    });
    assertEquals(initRule("visual.attnpool.q_proj.weight", [64, 64]), {
      kind: "normal",
      std: 0.02,
    });
    assertEquals(initRule("positional_embedding", [8, 64]), { kind: "normal", std: 0.01 });
    assertEquals(initRule("visual.layer1.0.downsample.1.weight", [32]), { kind: "keep" });
    // seeded
    const again = buildClip(sd);
    reinitializeClip(again, 1);
    for (const [k, v] of model.params) {
      const a = v.dataSync(), b = again.params.get(k)!.dataSync();
      assert(a.every((x, i) => x === b[i]), `${k}: same seed, same weights`);
    }
    model.dispose();
    again.dispose();
  });
}
