import { assert, assertEquals } from "../methods/_testing.ts";
import { orthonormalityError } from "../ogd/basis.ts";
import { loadBases, saveSnapshots } from "../ogd/io.ts";
import type { Snapshots } from "../ogd/track.ts";
import { randn } from "../ogd/_testing.ts";
import { HAS_SHARED, sharedPath, skipWithoutShared } from "../clip/_testing.ts";
import { main } from "./convert_grad_to_basis.ts";

Deno.test("convert-grad-to-basis: snapshots → basis at the energy threshold", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cgb_" });
  const log = console.log, err = console.error;
  console.log = () => {};
  try {
    const k = 6, d = 40;
    // snapshots with singular values ≈ 10, 1, 0.1, … : 0.97 keeps 1 vector, 0.999 keeps 2
    const dirs = randn((k + 2) * d, 71);
    const data = new Float32Array(k * d);
    for (let t = 0; t < k; t++) {
      for (let x = 0; x < d; x++) {
        data[t * d + x] = 10 * dirs[x] + (t % 2 ? 1 : -1) * dirs[d + x] +
          0.01 * dirs[(2 + t) * d + x];
      }
    }
    const snaps = new Map<string, Snapshots>([["a.mlp.c_fc.weight", {
      k,
      dim: d,
      shape: [4, 10],
      data,
    }]]);
    await saveSnapshots(`${dir}/in.safetensors`, snaps);
    assertEquals(
      await main(["--input", `${dir}/in.safetensors`, "--output", `${dir}/out.safetensors`]),
      0,
    );
    const f = await loadBases(`${dir}/out.safetensors`);
    assertEquals(f.kind, "basis");
    assertEquals(f.shapes.get("a.mlp.c_fc.weight"), [4, 10]);
    assertEquals(f.bases.get("a.mlp.c_fc.weight")![0].rows, 1);
    assertEquals(
      await main([
        "--input",
        `${dir}/in.safetensors`,
        "--output",
        `${dir}/o2.safetensors`,
        "--energy",
        "0.9999",
      ]),
      0,
    );
    const f2 = await loadBases(`${dir}/o2.safetensors`);
    const b2 = f2.bases.get("a.mlp.c_fc.weight")![0];
    assert(b2.rows >= 2, `rows ${b2.rows}`);
    assert(orthonormalityError(b2) <= 1e-6);
    console.error = () => {};
    assertEquals(await main(["--input", "x"]), 2);
    assertEquals(await main(["--input", "x", "--output", "y", "--energy", "2"]), 2);
    assertEquals(await main(["--bogus"]), 2);
  } finally {
    console.log = log;
    console.error = err;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "a PyTorch file is read through readCheckpoint and rejected when not a basis",
  ignore: skipWithoutShared(),
  async fn() {
    if (!HAS_SHARED) return;
    const p = sharedPath("fixtures/clip/vit-tiny-zscl.zscl.pth");
    try {
      await loadBases(p);
      throw new Error("expected a rejection");
    } catch (e) {
      const m = (e as Error).message;
      assert(m.includes(p) && m.includes("expected [rows, numel]"), m);
    }
  },
});
