import { ok } from "node:assert/strict";
import { main } from "./demo.ts";
import { learningGains } from "../methods/metrics.ts";

Deno.test({
  name: "demo (reduced): finetune learns every task and forgets; ZSCL learns and keeps transfer",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const out = await Deno.makeTempDir({ prefix: "mtil-demo-" });
    const runs = await main([
      "--iterations",
      "100",
      "--eval-limit",
      "150",
      "--out",
      out,
      "--backend",
      "wasm",
    ]);
    const ft = runs.find((r) => r.name === "finetune")!;
    const zscl = runs.find((r) => r.name === "ZSCL")!;
    const ftGain = learningGains(ft.matrix), zsclGain = learningGains(zscl.matrix);
    const show = (g: number[]) => g.map((v) => v.toFixed(1)).join(", ");
    console.log(`gains: finetune ${show(ftGain)}; ZSCL ${show(zsclGain)}`);
    for (const [t, g] of ftGain.entries()) {
      ok(g >= 10, `finetune gains ≥ 10 points on ${ft.matrix.tasks[t]}: ${show(ftGain)}`);
    }
    for (const [t, g] of zsclGain.entries()) {
      ok(g >= 5, `ZSCL still learns ${zscl.matrix.tasks[t]}: ${show(zsclGain)}`);
    }
    ok(ft.scores!.forgetting > 5, `finetune forgets: ${ft.scores!.forgetting.toFixed(2)}`);
    ok(
      zscl.scores!.transfer > ft.scores!.transfer,
      `ZSCL Transfer ${zscl.scores!.transfer.toFixed(2)} must exceed finetune's ${
        ft.scores!.transfer.toFixed(2)
      }`,
    );
    ok(
      zscl.scores!.avg > ft.scores!.avg,
      `ZSCL Avg ${zscl.scores!.avg.toFixed(2)} must exceed finetune's ${ft.scores!.avg.toFixed(2)}`,
    );
    for (const m of ["finetune", "ZSCL"]) {
      for (const f of ["accuracy_matrix.svg", "accuracy_matrix.png", "summary.json"]) {
        ok((await Deno.stat(`${out}/${m}/${f}`)).size > 0, `${m}/${f}`);
      }
    }
    await Deno.remove(out, { recursive: true });
  },
});
