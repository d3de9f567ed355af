"""PyTorch side of `deno task bench`: the same measurements as tasks/bench.ts, on the
reference CLIP architecture (OpenAI's model.py, condensed), random weights, float32, CPU.

Prints one JSON line: matmulGflops, vitEncode, rnEncode (images/s at batch 8), vitTrainStep,
rnTrainStep,
tinyTrainStep (seconds), peakRssMiB. Usage: python3 tasks/bench_torch.py [--quick] [--threads N]
"""
import argparse
import json
import resource
import time
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

BATCH = 8


class LayerNorm(nn.LayerNorm):
    def forward(self, x):
        return super().forward(x.float())


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model)
        self.attn_mask = attn_mask

    def forward(self, x):
        x = x + self.attn(self.ln_1(x), self.ln_1(x), self.ln_1(x), need_weights=False,
                          attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4)),
            ]))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def forward(self, x):
        x = x.flatten(start_dim=2).permute(2, 0, 1)
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :]
        x, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1],
            num_heads=self.num_heads, q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, training=self.training, need_weights=False)
        return x.squeeze(0)


class ModifiedResNet(nn.Module):
    def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        for conv, bn in [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]:
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width,
                 vision_patch_size, context_length, vocab_size, transformer_width,
                 transformer_heads, transformer_layers):
        super().__init__()
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(vision_layers, embed_dim, vision_width * 32 // 64,
                                         image_resolution, vision_width)
        else:
            self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width,
                                            vision_layers, vision_width // 64, embed_dim)
        mask = torch.empty(context_length, context_length).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                       mask)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(
            0.01 * torch.randn(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(
            transformer_width ** -0.5 * torch.randn(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def encode_image(self, image):
        return self.visual(image)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        i = self.encode_image(image)
        t = self.encode_text(text)
        i = i / i.norm(dim=1, keepdim=True)
        t = t / t.norm(dim=1, keepdim=True)
        logits = self.logit_scale.exp() * i @ t.t()
        return logits, logits.t()


def vit_b32():
    return CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)


def rn50():
    return CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12)


def tiny():
    return CLIP(32, 32, 2, 64, 8, 77, 49408, 64, 1, 2)


def time_it(fn, min_seconds, max_reps, min_reps=1):
    """Fastest call after one warm-up (as tasks/bench.ts: best-of-N on a shared machine)."""
    fn()
    reps, best = 0, float("inf")
    t0 = time.perf_counter()
    while reps < max_reps and (reps < min_reps or time.perf_counter() - t0 < min_seconds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        reps += 1
    return best


def tokens(n, ctx):
    g = torch.Generator().manual_seed(7)
    t = torch.zeros(n, ctx, dtype=torch.long)
    for i in range(n):
        length = 5 + i % 10
        t[i, 0] = 49406
        t[i, 1:length] = torch.randint(1, 49000, (length - 1,), generator=g)
        t[i, length] = 49407
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (bench.ts also sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    min_s = 0.5 if args.quick else 2
    r = {"backend": "pytorch", "notes": [f"torch {torch.__version__}, {args.threads} thread(s)"]}

    a, b = torch.randn(1576, 768), torch.randn(768, 768)
    s = time_it(lambda: a @ b, min_s, 50)
    r["matmulGflops"] = 2 * 1576 * 768 * 768 / s / 1e9

    with torch.no_grad():
        for name, make, key in [("ViT-B/32", vit_b32, "vitEncode"), ("RN50", rn50, "rnEncode")]:
            model = make().eval()
            x = torch.randn(BATCH, 3, 224, 224)
            s = time_it(lambda: model.encode_image(x), min_s, 1 if args.quick else 5)
            r[key] = BATCH / s
            del model

    for make, key in [(vit_b32, "vitTrainStep"), (rn50, "rnTrainStep")]:
        model = make().train()
        visual = model.visual
        dim = model.text_projection.shape[1]
        del model
        opt = torch.optim.AdamW(visual.parameters(), lr=1e-5, weight_decay=0.1)
        x = torch.randn(BATCH, 3, 224, 224)
        target = F.normalize(torch.randn(BATCH, dim), dim=-1)
        labels = torch.arange(BATCH)

        def step():
            opt.zero_grad(set_to_none=True)
            f = F.normalize(visual(x), dim=-1)
            loss = F.cross_entropy(100 * f @ target.t(), labels)
            loss.backward()
            opt.step()

        r[key] = time_it(step, 0 if args.quick else 5, 1 if args.quick else 5,
                         1 if args.quick else 3)
        del visual, opt

    model = tiny().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    x = torch.randn(BATCH, 3, 32, 32)
    text = tokens(BATCH, 77)

    def tiny_step():
        opt.zero_grad(set_to_none=True)
        li, lt = model(x, text)
        loss = (F.cross_entropy(li, labels) + F.cross_entropy(lt, labels)) / 2
        loss.backward()
        opt.step()

    r["tinyTrainStep"] = time_it(tiny_step, min_s, 3 if args.quick else 20)
    r["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(r))


if __name__ == "__main__":
    main()
