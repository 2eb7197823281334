"""PyTorch CPU reference for the train-step (and DDIM sampling) throughput of gen_jax's DDPM UNet.

Builds the same network as gen_jax's `UNet` (gen_jax/models/unet.py, Ho et al. 2020) with
ch 64, ch_mult (1, 2, 2), 2 res blocks, attention at 16x16, dropout 0.1, 3 output channels on
32x32x3 images (6,472,195 parameters, as gen_jax counts them) and times full DDPM train steps
(forward, backward, grad-norm clip, Adam update) on one fixed batch of random images in
[-1, 1], so its images/s can be set beside gen_jax's train-step figures for that model:

* timestep embedding: sinusoid of dim ch (sin, cos of t * exp(-log(10000) i / (ch/2 - 1))),
  Dense(4 ch), SiLU, Dense(4 ch); each res block adds Dense(out_ch)(SiLU(temb));
* res block: GroupNorm(32, eps 1e-6), SiLU, 3x3 conv, + temb projection, GroupNorm, SiLU,
  dropout (nn.Dropout, train mode), 3x3 conv; a 1x1 (Dense) shortcut where channels change;
* attention (16x16 and the middle): GroupNorm, single-head q, k, v over all positions
  (1x1 convs = Dense over channels, scale 1/sqrt(C)), 1x1 proj_out, residual;
* downsampling: 3x3 stride-2 conv padded as JAX 'SAME' on even sizes (0 top/left, 1
  bottom/right); upsampling: nearest x2 + 3x3 conv; the up path concatenates the down path's
  activations [h, skip] as gen_jax does; out: GroupNorm, SiLU, 3x3 conv to 3 channels;
* train step: t ~ U{0..999}, eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
  with linear betas 1e-4..0.02 over T = 1000, MSE(eps_hat, eps), Adam lr 2e-4,
  clip_grad_norm_(1.0).

`--sample` instead times DDIM sampling (eta 0, uniform spacing, x0 clipped to [-1, 1] and eps
recomputed from it, as gen_jax's `ddim_sample`) of `--num` (16) images over `--ddim_steps`
(50) network evaluations, under torch.no_grad with dropout off.

FLOPs are counted analytically from the layer shapes (2 x multiply-adds of every conv,
1x1 conv / dense layer and the two attention matmuls; norms, activations and the elementwise
DDPM maths are left out, padded taps counted): 3.175 GFLOP per image forward (XLA's cost
analysis of gen_jax's batch-1 forward says 3.01, it counts no taps on the 'SAME' padding).
A train step is counted as 3x the forward (backward ~2x). The network's output equals
gen_jax's for the same weights (checked: max abs difference 4e-5 on outputs up to 6.9).

Not modelled: gen_jax's EMA of the parameters, its grad / update / param norms, its
learning-rate schedule and its per-example dropout masks (here plain nn.Dropout). Memory
format: channels_last (NHWC, gen_jax's layout) is the default, since it was the faster of the
two on 2 CPU cores (torch 2.13 CPU, batch 32, two 4-step runs each: 1.07-1.09 vs
1.12-1.14 s per step, ~4% faster); `--no-channels_last` gives PyTorch's NCHW. Attention
uses F.scaled_dot_product_attention (a little faster here than softmax(q k^T) v).

torch is NOT a gen_jax dependency: run this from a separate environment, e.g.

  python3.11 -m venv /path/to/torch-venv
  /path/to/torch-venv/bin/pip install torch numpy
  /path/to/torch-venv/bin/python benchmarks/torch_unet_reference.py [--batch 32] [--steps 20]
      [--warmup 3] [--threads N] [--no-channels_last]
  /path/to/torch-venv/bin/python benchmarks/torch_unet_reference.py --sample [--num 16]
      [--ddim_steps 50] [--repeats 2] [--warmup 3] [--threads N]
"""

import argparse
import math
import resource
import time

import torch
import torch.nn.functional as F
from machine import description
from torch import nn

IMAGE_SIZE = 32
IMAGE_CHANNELS = 3
CH = 64
CH_MULT = (1, 2, 2)
NUM_RES_BLOCKS = 2
ATTN_RESOLUTIONS = (16,)
DROPOUT = 0.1
NUM_TIMESTEPS = 1000


def norm(channels: int) -> nn.GroupNorm:
  return nn.GroupNorm(32, channels, eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
  """t [B] -> [B, dim], as gen_jax's `timestep_embedding`."""
  half = dim // 2
  frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32)
                          / (half - 1))
  angles = t.float()[:, None] * frequencies[None]
  return F.pad(torch.cat([torch.sin(angles), torch.cos(angles)], dim=1), (0, dim % 2))


class ResnetBlock(nn.Module):
  """x [B, C, H, W], temb [B, 4 ch] -> [B, out_ch, H, W]."""

  def __init__(self, in_ch: int, out_ch: int, temb_ch: int) -> None:
    super().__init__()
    self.norm1, self.conv1 = norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
    self.temb_proj = nn.Linear(temb_ch, out_ch)
    self.norm2, self.dropout = norm(out_ch), nn.Dropout(DROPOUT)
    self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
    self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

  def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
    h = self.conv1(F.silu(self.norm1(x)))
    h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
    h = self.conv2(self.dropout(F.silu(self.norm2(h))))
    if self.nin_shortcut is not None:
      x = self.nin_shortcut(x)
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over all positions: [B, C, H, W] -> [B, C, H, W]."""

  def __init__(self, channels: int) -> None:
    super().__init__()
    self.norm = norm(channels)
    self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    y = self.norm(x)
    # [B, 1, HW, C] each; SDPA's default scale is 1/sqrt(C), as gen_jax's.
    q, k, v = (f(y).flatten(2).transpose(1, 2)[:, None] for f in (self.q, self.k, self.v))
    out = F.scaled_dot_product_attention(q, k, v)[:, 0]  # [B, HW, C]
    out = out.transpose(1, 2).reshape(b, c, h, w)
    return x + self.proj_out(out)


class Downsample(nn.Module):
  """3x3 stride-2 conv, padded as JAX's 'SAME' on an even input (0 before, 1 after)."""

  def __init__(self, channels: int) -> None:
    super().__init__()
    self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
  """Nearest-neighbour x2, then a 3x3 conv."""

  def __init__(self, channels: int) -> None:
    super().__init__()
    self.conv = nn.Conv2d(channels, channels, 3, padding=1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))


class UNet(nn.Module):
  """x_t [B, 3, 32, 32], t [B] -> predicted noise [B, 3, 32, 32]; gen_jax's UNet, module by
  module in the same order (its channel bookkeeping mirrored at construction)."""

  def __init__(self) -> None:
    super().__init__()
    temb_ch = 4 * CH
    self.temb_dense0, self.temb_dense1 = nn.Linear(CH, temb_ch), nn.Linear(temb_ch, temb_ch)
    self.conv_in = nn.Conv2d(IMAGE_CHANNELS, CH, 3, padding=1)
    # The down path: (module, attention or None, is_downsample), and the skips' channels.
    self.down = nn.ModuleList()
    skips, c, res = [CH], CH, IMAGE_SIZE
    for level, mult in enumerate(CH_MULT):
      for _ in range(NUM_RES_BLOCKS):
        block = ResnetBlock(c, CH * mult, temb_ch)
        c = CH * mult
        attn = AttnBlock(c) if res in ATTN_RESOLUTIONS else nn.Identity()
        self.down.append(nn.ModuleList([block, attn]))
        skips.append(c)
      if level != len(CH_MULT) - 1:
        self.down.append(Downsample(c))
        skips.append(c)
        res //= 2
    self.mid = nn.ModuleList([ResnetBlock(c, c, temb_ch), AttnBlock(c),
                              ResnetBlock(c, c, temb_ch)])
    self.up = nn.ModuleList()
    for level, mult in reversed(list(enumerate(CH_MULT))):
      for _ in range(NUM_RES_BLOCKS + 1):
        block = ResnetBlock(c + skips.pop(), CH * mult, temb_ch)
        c = CH * mult
        attn = AttnBlock(c) if res in ATTN_RESOLUTIONS else nn.Identity()
        self.up.append(nn.ModuleList([block, attn]))
      if level != 0:
        self.up.append(Upsample(c))
        res *= 2
    self.norm_out, self.conv_out = norm(c), nn.Conv2d(c, IMAGE_CHANNELS, 3, padding=1)

  def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    temb = self.temb_dense0(timestep_embedding(t, CH))
    temb = self.temb_dense1(F.silu(temb))
    hs = [self.conv_in(x)]
    for m in self.down:
      hs.append(m[1](m[0](hs[-1], temb)) if isinstance(m, nn.ModuleList) else m(hs[-1]))
    h = self.mid[0](hs[-1], temb)
    h = self.mid[2](self.mid[1](h), temb)
    for m in self.up:
      if isinstance(m, nn.ModuleList):
        h = m[1](m[0](torch.cat([h, hs.pop()], dim=1), temb))
      else:
        h = m(h)
    return self.conv_out(F.silu(self.norm_out(h)))


def forward_flops(model: UNet) -> float:
  """FLOPs of one image's forward pass: 2 x the multiply-adds of every conv and linear layer
  and of the attention's q k^T and weights v matmuls, from a traced batch-1 forward."""
  macs = [0]

  def conv_hook(m: nn.Conv2d, _, out: torch.Tensor) -> None:
    kh, kw = m.kernel_size
    macs[0] += out[0].numel() * m.in_channels // m.groups * kh * kw

  def linear_hook(m: nn.Linear, _, out: torch.Tensor) -> None:
    macs[0] += out[0].numel() * m.in_features

  def attn_hook(_, inputs: tuple[torch.Tensor], __) -> None:
    _, c, h, w = inputs[0].shape
    macs[0] += 2 * (h * w) ** 2 * c

  hooks = []
  for m in model.modules():
    for kind, hook in ((nn.Conv2d, conv_hook), (nn.Linear, linear_hook),
                       (AttnBlock, attn_hook)):
      if isinstance(m, kind):
        hooks.append(m.register_forward_hook(hook))
  with torch.no_grad():
    model(torch.zeros(1, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(1))
  for hook in hooks:
    hook.remove()
  return 2.0 * macs[0]


def alphas_cumprod() -> torch.Tensor:
  """Ho et al.'s linear betas 1e-4..0.02 over T = 1000 -> abar [T] (float64 maths, float32)."""
  betas = torch.linspace(1e-4, 0.02, NUM_TIMESTEPS, dtype=torch.float64)
  return torch.cumprod(1.0 - betas, 0).float()


def parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=32, help='Images per train step.')
  p.add_argument('--steps', type=int, default=20, help='Timed train steps.')
  p.add_argument('--warmup', type=int, default=3,
                 help='Untimed train steps (with --sample: network evaluations) first.')
  p.add_argument('--threads', type=int, default=None, help='torch intra-op threads.')
  p.add_argument('--channels_last', action=argparse.BooleanOptionalAction, default=True,
                 help='Use the NHWC memory format (default; --no-channels_last: NCHW).')
  p.add_argument('--sample', action='store_true', help='Time DDIM sampling instead.')
  p.add_argument('--num', type=int, default=16, help='Images per sampler call (--sample).')
  p.add_argument('--ddim_steps', type=int, default=50, help='DDIM steps (--sample).')
  p.add_argument('--repeats', type=int, default=2, help='Timed sampler calls (--sample).')
  return p.parse_args()


def to_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
  return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def make_batch(batch: int, channels_last: bool) -> torch.Tensor:
  """One fixed batch of uniform noise images in [-1, 1], [batch, 3, 32, 32]."""
  gen = torch.Generator().manual_seed(0)
  x = 2.0 * torch.rand(batch, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, generator=gen) - 1.0
  return to_format(x, channels_last)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x0: torch.Tensor,
               abar: torch.Tensor) -> None:
  t = torch.randint(0, NUM_TIMESTEPS, (x0.shape[0],))
  eps = torch.randn_like(x0)
  a = abar[t][:, None, None, None]
  xt = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
  opt.zero_grad(set_to_none=True)
  F.mse_loss(model(xt, t), eps).backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
  opt.step()


def time_steps(model: nn.Module, opt: torch.optim.Optimizer, x0: torch.Tensor,
               abar: torch.Tensor, steps: int) -> float:
  """Seconds for `steps` train steps."""
  start = time.perf_counter()
  for _ in range(steps):
    train_step(model, opt, x0, abar)
  return time.perf_counter() - start


@torch.no_grad()
def ddim_sample(model: nn.Module, abar: torch.Tensor, num: int, ddim_steps: int,
                channels_last: bool) -> torch.Tensor:
  """Deterministic DDIM (eta 0) over uniformly spaced timesteps 0, T/S, ..., as gen_jax's
  `ddim_sample` with clip=True: x0 clipped to [-1, 1] and eps recomputed from it."""
  steps = [i * NUM_TIMESTEPS // ddim_steps for i in range(ddim_steps)]
  x = to_format(torch.randn(num, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE), channels_last)
  for i in reversed(range(ddim_steps)):
    t = steps[i]
    a = abar[t]
    a_prev = abar[steps[i - 1]] if i > 0 else torch.tensor(1.0)
    eps = model(x, torch.full((num,), t))
    x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1.0, 1.0)
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
    x = a_prev.sqrt() * x0 + (1 - a_prev).clamp(min=0).sqrt() * eps
  return x


def main() -> None:
  args = parse_args()
  print(description())
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = UNet()
  params = sum(p.numel() for p in model.parameters())
  fwd_flops = forward_flops(model)
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
  abar = alphas_cumprod()
  layout = 'channels_last' if args.channels_last else 'NCHW'
  rss_mib = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731

  if args.sample:
    model.eval()
    with torch.no_grad():
      x = to_format(torch.randn(args.num, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE),
                    args.channels_last)
      for _ in range(args.warmup):
        model(x, torch.zeros(args.num))
    start = time.perf_counter()
    for _ in range(args.repeats):
      ddim_sample(model, abar, args.num, args.ddim_steps, args.channels_last)
    call_s = (time.perf_counter() - start) / args.repeats
    flops = fwd_flops * args.num * args.ddim_steps
    print(f'DDIM-{args.ddim_steps} {args.num} images {call_s:.2f} s  '
          f'images/s {args.num / call_s:.2f}  peak RSS {rss_mib():.0f} MiB  params {params}  '
          f'threads {torch.get_num_threads()}  {layout}  GFLOP/call {flops / 1e9:.1f}  '
          f'GFLOP/s {flops / call_s / 1e9:.1f}')
    return

  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=2e-4)
  x0 = make_batch(args.batch, args.channels_last)
  time_steps(model, opt, x0, abar, args.warmup)
  seconds = time_steps(model, opt, x0, abar, args.steps)
  step_ms = 1e3 * seconds / args.steps
  step_flops = 3 * fwd_flops * args.batch
  print(f'images/s {args.batch * args.steps / seconds:.1f}  step {step_ms:.2f} ms'
        f'  peak RSS {rss_mib():.0f} MiB  params {params}  threads {torch.get_num_threads()}'
        f'  {layout}  fwd GFLOP/image {fwd_flops / 1e9:.3f}'
        f'  GFLOP/step {step_flops / 1e9:.1f}'
        f'  GFLOP/s {step_flops * args.steps / seconds / 1e9:.1f}')


if __name__ == '__main__':
  main()
