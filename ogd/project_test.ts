import { assert, assertEquals, assertThrows } from "../methods/_testing.ts";
import { tf } from "../clip/backends/tf.ts";
import { type Basis, dot, orthonormalizeRows, projectOutF64, stackBases } from "./basis.ts";
import { OgdProjector, projectOrthogonal } from "./project.ts";
import { randn, randomOrthonormal } from "./_testing.ts";

function maxRelDot(p: Float32Array | Float64Array, b: Basis, gNorm: number): number {
  let worst = 0;
  for (let i = 0; i < b.rows; i++) {
    worst = Math.max(worst, Math.abs(dot(p, b.data.subarray(i * b.dim, (i + 1) * b.dim))) / gNorm);
  }
  return worst;
}

Deno.test("projectOrthogonal: result ⟂ every basis vector (|dot| ≤ 1e-5 relative), shape kept", () => {
  const [rows, cols] = [24, 16];
  const d = rows * cols;
  const basis = randomOrthonormal(10, d, 41);
  const gData = randn(d, 42);
  // make the gradient mostly inside the span so the test is demanding
  for (let i = 0; i < basis.rows; i++) {
    for (let x = 0; x < d; x++) gData[x] += 5 * basis.data[i * d + x];
  }
  const gNorm = Math.sqrt(dot(gData, gData));
  const before = tf.memory().numTensors;
  const b = tf.tensor2d(Float32Array.from(basis.data), [basis.rows, d]);
  const g = tf.tensor2d(Float32Array.from(gData), [rows, cols]);
  const p = projectOrthogonal(g, b);
  assertEquals(p.shape, [rows, cols]);
  const pv = p.dataSync() as Float32Array;
  const rel = maxRelDot(pv, basis, gNorm);
  assert(rel <= 1e-5, `relative dot ${rel}`);
  // matches the float64 projection
  const ref = projectOutF64(gData, basis);
  let err = 0;
  for (let x = 0; x < d; x++) err = Math.max(err, Math.abs(pv[x] - ref[x]));
  assert(err <= 1e-4 * gNorm / Math.sqrt(d) + 1e-5, `vs float64 ${err}`);
  // the part outside the span is untouched: g − p lies in the span
  const diff = new Float64Array(d);
  for (let x = 0; x < d; x++) diff[x] = gData[x] - pv[x];
  const rest = projectOutF64(diff, basis);
  assert(Math.sqrt(dot(rest, rest)) <= 1e-5 * gNorm);
  tf.dispose([b, g, p]);
  assertEquals(tf.memory().numTensors, before, "no tensor leaks");
});

Deno.test("OgdProjector: orthonormal vs sequential (reference) mode over two tasks", () => {
  const d = 200;
  const t1 = randomOrthonormal(6, d, 51);
  const t2 = randomOrthonormal(6, d, 52); // overlaps t1's span
  const bases = new Map<string, Basis | Basis[]>([["w", [t1, t2]], ["empty", {
    rows: 0,
    dim: d,
    data: new Float64Array(0),
  }]]);
  const gData = randn(d, 53);
  const gNorm = Math.sqrt(dot(gData, gData));
  const before = tf.memory().numTensors;
  const ortho = new OgdProjector(bases);
  const seq = new OgdProjector(bases, { mode: "sequential" });
  assertEquals(ortho.names(), ["w"]);
  assertEquals(ortho.rank("w"), 12);
  const g = tf.tensor1d(Float32Array.from(gData));
  for (let step = 0; step < 3; step++) {
    const out = ortho.projectAll({ w: g, other: g });
    const pv = out.w.dataSync() as Float32Array;
    const all = orthonormalizeRows(stackBases([t1, t2]));
    assert(maxRelDot(pv, all, gNorm) <= 1e-5, "orthonormal mode ⟂ both tasks");
    // a parameter without a basis passes through unchanged
    assertEquals(Array.from(out.other.dataSync()), Array.from(g.dataSync()));
    tf.dispose(Object.values(out));
  }
  const s = seq.project("w", g);
  const sv = s.dataSync() as Float32Array;
  assert(maxRelDot(sv, t2, gNorm) <= 1e-5, "sequential ⟂ last block");
  assert(maxRelDot(sv, t1, gNorm) > 1e-3, "sequential leaves a component along the first task");
  const ref = projectOutF64(gData, [t1, t2]);
  let err = 0;
  for (let x = 0; x < d; x++) err = Math.max(err, Math.abs(sv[x] - ref[x]));
  assert(err <= 1e-5, `sequential equals the reference's float64 block projection (${err})`);
  s.dispose();
  const wrong = tf.zeros([3]);
  assertThrows(() => ortho.project("w", wrong), "another model");
  wrong.dispose();
  g.dispose();
  ortho.dispose();
  seq.dispose();
  assertEquals(tf.memory().numTensors, before, "projector disposes its tensors");
});
