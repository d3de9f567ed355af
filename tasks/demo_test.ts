import { ok } from "node:assert/strict";
import { main } from "./demo.ts";

Deno.test({
  name: "demo (reduced): ZSCL keeps more zero-shot transfer than plain finetuning",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "mtil-demo-" });
    const runs = await main([
      "--iterations",
      "25",
      "--eval-limit",
      "150",
      "--out",
      out,
      "--backend",
      "wasm",
    ]);
    const ft = runs.find((r) => r.name === "finetune")!.scores!;
    const zscl = runs.find((r) => r.name === "ZSCL")!.scores!;
    ok(
      zscl.transfer > ft.transfer,
      `ZSCL Transfer ${zscl.transfer.toFixed(2)} must exceed finetune's ${ft.transfer.toFixed(2)}`,
    );
    ok(zscl.forgetting <= ft.forgetting, "ZSCL forgets no more than finetune");
    for (const m of ["finetune", "ZSCL"]) {
      for (const f of ["accuracy_matrix.svg", "accuracy_matrix.png", "summary.json"]) {
        ok((await Deno.stat(`${out}/${m}/${f}`)).size > 0, `${m}/${f}`);
      }
    }
    await Deno.remove(out, { recursive: true });
  },
});
