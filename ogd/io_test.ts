import { assert, assertEquals } from "../methods/_testing.ts";
import { tf } from "../clip/backends/tf.ts";
import { dot, orthonormalityError } from "./basis.ts";
import { loadBases, loadSnapshots, mergeBasisFiles, saveBases, saveSnapshots } from "./io.ts";
import { GradientSnapshots, shouldTrackParam, snapshotIterations } from "./track.ts";
import { randn, randomOrthonormal } from "./_testing.ts";

async function rejects(p: Promise<unknown>, includes: string): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (!String((e as Error).message).includes(includes)) {
      throw new Error(`message "${(e as Error).message}" lacks "${includes}"`);
    }
    return;
  }
  throw new Error("expected a rejection");
}

Deno.test("shouldTrackParam follows the reference rule", () => {
  const yes = [
    "visual.transformer.resblocks.0.attn.in_proj_weight",
    "visual.transformer.resblocks.0.attn.out_proj.weight",
    "transformer.resblocks.3.mlp.c_fc.weight",
    "transformer.resblocks.3.ln_1.weight",
    "ln_final.weight",
    "visual.ln_post.weight",
  ];
  const no = [
    "visual.transformer.resblocks.0.attn.in_proj_bias",
    "transformer.resblocks.3.mlp.c_fc.bias",
    "ln_final.bias",
    "token_embedding.weight",
    "visual.conv1.weight",
    "text_projection",
    "positional_embedding",
  ];
  for (const n of yes) assert(shouldTrackParam(n), n);
  for (const n of no) assert(!shouldTrackParam(n), n);
});

Deno.test("snapshotIterations: N+1 evenly spaced iterations", () => {
  assertEquals(snapshotIterations(1000, 4), [0, 250, 500, 749, 999]);
  assertEquals(snapshotIterations(11, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assertEquals(snapshotIterations(3, 10), [0, 1, 2]);
});

Deno.test("basis and snapshot files round-trip; snapshots convert; bad files name the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ogd_io_" });
  try {
    const d = 30;
    const t1 = randomOrthonormal(3, d, 61), t2 = randomOrthonormal(2, d, 62);
    const path = `${dir}/grad_A.safetensors`;
    await saveBases(path, new Map([["w", [t1, t2]]]), {
      shapes: new Map([["w", [5, 6]]]),
      meta: { task: "A", energy: 0.97 },
    });
    const f = await loadBases(path);
    assertEquals(f.kind, "basis");
    assertEquals(f.shapes.get("w"), [5, 6]);
    assertEquals(f.meta.task, "A");
    const blocks = f.bases.get("w")!;
    assertEquals(blocks.map((b) => b.rows), [3, 2]);
    for (let x = 0; x < d; x++) assert(Math.abs(blocks[1].data[x] - t2.data[x]) < 1e-7);
    assert(orthonormalityError(blocks[0]) <= 1e-6);
    assertEquals(mergeBasisFiles([f, f]).get("w")!.length, 4);

    // snapshots recorded from tensors, saved, loaded back and converted
    const rec = new GradientSnapshots(100, 4);
    assertEquals([...rec.iterations], [0, 25, 50, 74, 99]);
    const base = randn(2 * d, 63);
    for (let it = 0; it < 100; it++) {
      if (!rec.due(it)) continue;
      const a = Math.cos(it), b = Math.sin(it);
      const g = tf.tensor2d(Array.from({ length: d }, (_, x) => a * base[x] + b * base[d + x]), [
        5,
        6,
      ]);
      rec.record("w", g);
      g.dispose();
    }
    assertEquals(rec.count("w"), 5);
    const sp = `${dir}/snap.safetensors`;
    await saveSnapshots(sp, rec.snapshots(), { task: "A" });
    const back = await loadSnapshots(sp);
    assertEquals(back.get("w")!.k, 5);
    assertEquals(back.get("w")!.shape, [5, 6]);
    const conv = await loadBases(sp, { energy: 1 });
    assertEquals(conv.kind, "snapshots");
    const cb = conv.bases.get("w")![0];
    assertEquals(cb.rows, 2); // rank 2 by construction
    assert(orthonormalityError(cb) <= 1e-6);
    const inSpan = base.subarray(0, d);
    let captured = 0;
    for (let i = 0; i < cb.rows; i++) {
      captured += dot(inSpan, cb.data.subarray(i * d, (i + 1) * d)) ** 2;
    }
    assert(Math.abs(captured / dot(inSpan, inSpan) - 1) < 1e-5, "basis spans the snapshots");

    await Deno.writeFile(`${dir}/bad.safetensors`, new Uint8Array([1, 2, 3]));
    await rejects(loadBases(`${dir}/bad.safetensors`), "bad.safetensors");
    await rejects(loadBases(`${dir}/missing.safetensors`), "missing.safetensors");
    await rejects(loadSnapshots(path), "not an OGD snapshot file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
