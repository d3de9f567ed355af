import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { tf } from "./tf.ts";
import { CPU_DNNL, dnnlBackendUnavailableReason, registerDnnlBackend } from "./onednn_kernels.ts";
import { HOST_POOL_MAX_BYTES, hostPoolOf } from "./host_pool.ts";

const HAS = registerDnnlBackend();
if (!HAS) {
  console.warn(
    `%cSKIPPING host pool tests: ${dnnlBackendUnavailableReason()}`,
    "color: red; font-weight: bold",
  );
}

const N = 1 << 14; // above ELTWISE_MIN and HOST_POOL_MIN: tf.relu allocates through the pool

async function pool() {
  await tf.setBackend(CPU_DNNL);
  const p = hostPoolOf(tf.backend());
  if (!p) throw new Error("cpu-dnnl has no host pool");
  p.clear();
  return p;
}

function ramp(n: number, k = 1): tf.Tensor {
  return tf.tensor1d(Float32Array.from({ length: n }, (_, i) => (i % 7) * k));
}

/** The backend's array behind `t` (without marking it as handed out). */
function storage(t: tf.Tensor): Float32Array {
  const b = tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } };
  return b.data.get(t.dataId).values;
}

Deno.test({
  name: "host pool: a disposed kernel output is reused, not zero-filled, and results stay right",
  ignore: !HAS,
  async fn() {
    const p = await pool();
    const x = ramp(N);
    const a = tf.relu(x);
    const buf = storage(a);
    a.dispose();
    const before = p.stats.reused;
    const negX = tf.neg(x);
    const b = tf.relu(negX); // all zeros: must overwrite the recycled values
    assertEquals(p.stats.reused > before, true);
    assertEquals(Array.from(b.dataSync()).every((v) => v === 0), true);
    void buf;
    tf.dispose([x, negX, b]);
  },
});

Deno.test({
  name: "host pool: arrays read out (dataSync), views and caller arrays are never recycled",
  ignore: !HAS,
  async fn() {
    const p = await pool();
    const x = ramp(N);
    // 1. read out, then disposed: the caller's copy must not change
    const a = tf.relu(x);
    const seen = a.dataSync();
    const snapshot = Array.from(seen);
    a.dispose();
    assertEquals(p.freeBytes, 0);
    tf.tidy(() => void Array.from({ length: 4 }, () => tf.relu(tf.neg(x))));
    assertEquals(Array.from(seen), snapshot);
    // 2. a tensor over a view of the buffer (as tfjs's cpu Slice makes for contiguous slices):
    //    disposing the source must not free it while the view lives
    p.clear();
    const c = tf.relu(x);
    const info = (tf.backend() as unknown as {
      makeTensorInfo(shape: number[], dtype: string, v: Float32Array): tf.TensorInfo;
    }).makeTensorInfo([N / 2], "float32", storage(c).subarray(N / 2));
    const s = (tf.engine() as unknown as {
      makeTensorFromTensorInfo(i: tf.TensorInfo): tf.Tensor;
    }).makeTensorFromTensorInfo(info);
    assertEquals(storage(s).buffer, storage(c).buffer);
    const want = Array.from(storage(s));
    c.dispose();
    assertEquals(p.freeBytes, 0);
    tf.tidy(() => void Array.from({ length: 4 }, () => tf.relu(tf.neg(x))));
    assertEquals(Array.from(storage(s)), want);
    s.dispose(); // last holder: now recycled
    assertEquals(p.freeBytes >= N * 4, true);
    // 3. an array the caller passed in is the caller's
    p.clear();
    const mine = new Float32Array(N).fill(3);
    tf.tensor1d(mine).dispose();
    assertEquals(p.freeBytes, 0);
    tf.dispose(x);
  },
});

Deno.test({
  name: "host pool: bounded, and tensor counts stay flat over repeated steps",
  ignore: !HAS,
  async fn() {
    const p = await pool();
    const x = ramp(N, 0.5);
    const start = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      tf.tidy(() => void tf.grad((t: tf.Tensor) => tf.sum(tf.relu(tf.mul(t, t))))(x));
    }
    assertEquals(tf.memory().numTensors, start);
    if (p.freeBytes > HOST_POOL_MAX_BYTES) throw new Error(`pool holds ${p.freeBytes} bytes`);
    assertEquals(p.stats.reused > 0, true);
    x.dispose();
  },
});
