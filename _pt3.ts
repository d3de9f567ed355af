import { initBackend } from "./clip/backend.ts";
import { pretrainSynthClip } from "./methods/pretrain.ts";
import { zeroShotHead, classify } from "./clip/zeroshot.ts";
import { synthTask, SYNTH_ATTRIBUTE_NAMES } from "./datasets/synth.ts";
import { normalizeImage } from "./datasets/transforms.ts";
import { saveClip } from "./clip/load.ts";
import { tf } from "./clip/tf.ts";
await initBackend({quiet: true});
const steps = Number(Deno.args[0] ?? 300);
const t0 = performance.now();
const { model, losses } = pretrainSynthClip({ steps, batchSize: 64, lr: 1e-3, warmup: 100, config: {visionPatchSize: 8, visionWidth: 128, transformerWidth: 128, transformerHeads: 2, visionLayers: 2, transformerLayers: 2}, progress: false, onStep: (s, l) => { if (s % 50 === 0) console.log(s, l.toFixed(3), ((performance.now()-t0)/1000).toFixed(0)+"s"); } });
await saveClip("/tmp/synth-try2.safetensors", model, {}, {floatDtype: "float16"});
for (const attr of SYNTH_ATTRIBUTE_NAMES) {
  const ds = synthTask(attr, { split: "test", n: 300 });
  const head = await zeroShotHead(model, ds.classnames, ds.templates);
  const imgs = new Float32Array(ds.length * 32 * 32 * 3);
  const labels: number[] = [];
  for (let i = 0; i < ds.length; i++) { const ex = await ds.get(i); normalizeImage(ex.image as any, {}, imgs, i * 3072); labels.push(ex.label); }
  const x = tf.tensor4d(imgs, [ds.length, 32, 32, 3]);
  const r = classify(model, head, x, { topk: 1 });
  const pred = r.topk.indices.dataSync();
  let c = 0; for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) c++;
  console.log(attr, (100 * c / labels.length).toFixed(1), "% chance", (100 / ds.classnames.length).toFixed(1));
  tf.dispose([x, r.logits, r.probs, r.topk.indices, r.topk.values, head]);
}
