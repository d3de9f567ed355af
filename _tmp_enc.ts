import { tf } from "./clip/tf.ts";
import { initBackend } from "./clip/backend.ts";
import { buildClip, MODEL_CONFIGS, randomStateDict } from "./clip/model.ts";
await initBackend({ prefer: Deno.args[0] ?? "cpu-blas", quiet: true });
const config = MODEL_CONFIGS["ViT-B/32"];
const model = buildClip(randomStateDict(config, 1), { config });
const x = tf.randomNormal([8, 224, 224, 3]) as tf.Tensor4D;
for (let i = 0; i < 4; i++) { const t = performance.now(); tf.tidy(() => void model.encodeImage(x).dataSync()); console.log("enc ms", (performance.now() - t).toFixed(0)); }
const p = await tf.profile(() => tf.tidy(() => void model.encodeImage(x).dataSync()));
const agg = new Map<string, number>(); let tot = 0;
for (const k of p.kernels) { const ms = Number(await k.kernelTimeMs); tot += ms; agg.set(k.name, (agg.get(k.name) ?? 0) + ms); }
console.log("kernel total", tot.toFixed(0), [...agg].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", "));
