import { torchNormF32 } from "./_torch_norm.ts";
import { assert, assertEquals, assertRelClose } from "./_testing.ts";

Deno.test("torchNormF32 reproduces PyTorch's float32 CPU norm bit for bit", () => {
  // Values printed by PyTorch 1.13 (AVX2 kernels) for the same inputs:
  //   x = torch.full((1000003,), 1e-3); x[:8] = 100; x[-1] = 3; x.norm() -> 282.858612
  //   (float64: 282.860389569: the million small squares are swamped in float32)
  const n = 1000003;
  const x = new Float32Array(n).fill(1e-3);
  x.fill(100, 0, 8);
  x[n - 1] = 3;
  assertEquals(torchNormF32(x, 8), Math.fround(282.858612));
  let exact = 0;
  for (const v of x) exact += v * v;
  assert(Math.abs(Math.sqrt(exact) - 282.860389569) < 1e-6);
  // torch.arange(1, 1001, dtype=torch.float32) / 1000 -> norm 18.2711105
  const y = Float32Array.from({ length: 1000 }, (_, i) => Math.fround((i + 1) / 1000));
  assertEquals(torchNormF32(y, 8), Math.fround(18.2711105));
});

Deno.test("torchNormF32 equals the exact norm on benign data and handles tails", () => {
  assertEquals(torchNormF32([3, 4]), 5); // shorter than one vector: tail only
  assertEquals(torchNormF32(new Float32Array(0)), 0);
  const z = Float32Array.from({ length: 1237 }, (_, i) => Math.sin(i));
  let s = 0;
  for (const v of z) s += v * v;
  assertRelClose(torchNormF32(z, 8), Math.sqrt(s), 1e-6);
  assertRelClose(torchNormF32(z, 16), Math.sqrt(s), 1e-6);
});
