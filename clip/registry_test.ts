import { deepStrictEqual, equal, rejects } from "node:assert/strict";
import {
  availableModels,
  BPE_VOCAB,
  findModel,
  OPENAI_MODELS,
  resolveBpeVocab,
  resolveModel,
} from "./registry.ts";
import { sharedPath, skipWithoutShared } from "./_testing.ts";

Deno.test("registry: the nine OpenAI models, sha256 embedded in each URL", () => {
  deepStrictEqual(availableModels(), [
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B/32",
    "ViT-B/16",
    "ViT-L/14",
    "ViT-L/14@336px",
  ]);
  for (const m of Object.values(OPENAI_MODELS)) {
    const parts = m.url.split("/");
    equal(parts.at(-2), m.sha256);
    equal(parts.at(-1), m.fileName);
    equal(m.sha256.length, 64);
    equal(m.url.startsWith("https://openaipublic.azureedge.net/clip/models/"), true);
  }
  equal(OPENAI_MODELS["ViT-B/16"].sha256.slice(0, 8), "5806e77c");
  equal(OPENAI_MODELS["ViT-L/14@336px"].imageResolution, 336);
  equal(BPE_VOCAB.url.split("/").at(-1), BPE_VOCAB.fileName);
});

Deno.test("registry: name spellings", () => {
  equal(findModel("ViT-B-16")?.name, "ViT-B/16");
  equal(findModel("vit-l-14-336")?.name, "ViT-L/14@336px");
  equal(findModel("ViT-L-14-336px")?.name, "ViT-L/14@336px");
  equal(findModel("rn50x4")?.name, "RN50x4");
  equal(findModel("ViT-H/14"), undefined);
});

Deno.test("resolveModel: local files pass through; unknown names list the models", async () => {
  const f = await Deno.makeTempFile({ suffix: ".pt" });
  try {
    equal(await resolveModel(f), f);
  } finally {
    await Deno.remove(f);
  }
  await rejects(
    () => resolveModel("ViT-H/14"),
    /model ViT-H\/14 not found: .*RN50, RN101.*ViT-L\/14@336px/,
  );
});

Deno.test({
  name: "resolveBpeVocab: a cached copy with the right sha256 is used without network",
  ignore: skipWithoutShared(),
  fn: async () => {
    equal(
      await resolveBpeVocab({ cacheDir: sharedPath("clip"), progress: false }),
      sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"),
    );
  },
});
