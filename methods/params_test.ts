import { assertEquals, assertThrows } from "./_testing.ts";
import { isBufferKey, selectTrainable, usesHead } from "./params.ts";

const VIT = [
  "positional_embedding",
  "text_projection",
  "logit_scale",
  "visual.class_embedding",
  "visual.positional_embedding",
  "visual.proj",
  "visual.conv1.weight",
  "visual.transformer.resblocks.0.attn.in_proj_weight",
  "visual.ln_post.bias",
  "transformer.resblocks.0.mlp.c_fc.weight",
  "token_embedding.weight",
  "ln_final.weight",
];
const HEAD = ["head.weight"];

Deno.test("selectTrainable: every train mode on ViT keys", () => {
  const all = [...VIT, ...HEAD];
  assertEquals(selectTrainable(VIT, "whole"), VIT.filter((n) => n !== "logit_scale"));
  assertEquals(selectTrainable(all, "image"), VIT.filter((n) => n.startsWith("visual.")));
  assertEquals(selectTrainable(all, "image-fc-fixed"), selectTrainable(all, "image"));
  assertEquals(selectTrainable(all, "image-fc"), [
    ...VIT.filter((n) => n.startsWith("visual.")),
    "head.weight",
  ]);
  assertEquals(selectTrainable(all, "text"), [
    "positional_embedding",
    "text_projection",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "token_embedding.weight",
    "ln_final.weight",
  ]);
  assertEquals(selectTrainable(all, "fc"), ["head.weight"]);
  assertEquals(selectTrainable(VIT, "whole", { freeze: true }), [
    "visual.transformer.resblocks.0.attn.in_proj_weight",
    "visual.ln_post.bias",
    "transformer.resblocks.0.mlp.c_fc.weight",
    "ln_final.weight",
  ]);
  assertThrows(() => selectTrainable(VIT, "both"), "whole, image, text");
  assertEquals([usesHead("fc"), usesHead("whole")], [true, false]);
});

Deno.test("selectTrainable: ResNet buffers never train; stem conv is not an embedding", () => {
  const rn = [
    "visual.conv1.weight",
    "visual.bn1.weight",
    "visual.bn1.running_mean",
    "visual.bn1.running_var",
    "visual.bn1.num_batches_tracked",
    "visual.attnpool.c_proj.weight",
  ];
  assertEquals(selectTrainable(rn, "image"), [
    "visual.conv1.weight",
    "visual.bn1.weight",
    "visual.attnpool.c_proj.weight",
  ]);
  assertEquals(selectTrainable(rn, "image", { freeze: true, vit: false }), [
    "visual.conv1.weight",
    "visual.bn1.weight",
  ]);
  assertEquals([isBufferKey("a.running_var"), isBufferKey("a.weight")], [true, false]);
});
