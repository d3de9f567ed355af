import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { linearPathsOf, modulePaths, paramRowsOf } from "./list_layers.ts";
import { MODEL_CONFIGS } from "../clip/model.ts";

Deno.test("list-layers: module paths are the parents of the state-dict keys, in order", () => {
  deepStrictEqual(modulePaths(["a.b.weight", "a.b.bias", "a.c.0.weight", "d"]), [
    "a",
    "a.b",
    "a.c",
    "a.c.0",
  ]);
});

Deno.test("list-layers: ViT-B/32 parameter total and linear paths", () => {
  const c = MODEL_CONFIGS["ViT-B/32"];
  const total = paramRowsOf(c).filter((r) => !r.buffer).reduce((s, r) => s + r.count, 0);
  strictEqual(total, 151_277_313); // the released ViT-B/32 parameter count
  const lin = linearPathsOf(c);
  strictEqual(lin.length, 3 * 12 + 3 * 12);
  ok(lin.includes("visual.transformer.resblocks.11.mlp.c_proj"));
  ok(lin.includes("transformer.resblocks.0.attn.out_proj"));
});

Deno.test("list-layers: RN50 lists the attention-pool projections", () => {
  const lin = linearPathsOf(MODEL_CONFIGS["RN50"]);
  deepStrictEqual(lin.slice(0, 4), [
    "visual.attnpool.k_proj",
    "visual.attnpool.q_proj",
    "visual.attnpool.v_proj",
    "visual.attnpool.c_proj",
  ]);
  ok(paramRowsOf(MODEL_CONFIGS["RN50"]).some((r) => r.buffer && r.name.endsWith("running_var")));
});
