"""PyTorch CPU reference for the train-step throughput of configs/dcgan_celeba64.py's DCGAN.

Builds the same networks as gen_jax's `Generator` and `Discriminator` (gen_jax/models/dcgan.py)
with the dcgan_celeba64 config (G 3,576,704 and D 2,765,568 parameters, as gen_jax counts
them) and times full GAN train steps on one fixed batch of random 64x64x3 images in [-1, 1],
so its images/s can be set beside
`benchmarks/train_throughput.py --config=configs/dcgan_celeba64.py`:

* generator: z [100] -> bias-free Dense(4 * 4 * 512) reshaped to 512 x 4 x 4 (gen_jax's
  first layer; the same map as the reference's 4x4 transposed conv on a 1x1 input),
  BatchNorm + ReLU; 4x4 stride-2 transposed convs (padding 1, no bias) to 256, 128, 64
  channels, each + BatchNorm + ReLU; the same to 3 channels + tanh;
* discriminator: 4x4 stride-2 convs (padding 1, no bias) to 64, 128, 256, 512 channels,
  BatchNorm after all but the first, LeakyReLU(0.2) after each; flatten, bias-free
  Dense(1) (gen_jax's last layer; the reference's 4x4 'valid' conv is the same map);
* BatchNorm eps 1e-5, momentum 0.1 (gen_jax's 0.9), batch statistics in training; every
  weight from N(0, 0.02) and the BatchNorm scales from N(1, 0.02), as gen_jax initialises;
* train step, as gen_jax's (n_critic 1): fake = G(z) once; one D update on D(real) and
  D(fake.detach()) (separate calls, so separate BatchNorm statistics), non-saturating
  BCE-with-logits loss softplus(-D(real)) + softplus(D(fake)); then one G update through the
  freshly updated D (training mode) with loss softplus(-D(fake)), reusing that fake batch.
  Like gen_jax (which differentiates the G loss with respect to the fake images only), D's
  parameters need no gradient in the G update (requires_grad off); each network has its own
  Adam, lr 2e-4, betas (0.5, 0.999).

FLOPs are counted analytically (2 x multiply-adds of the convs, transposed convs and dense
layers; BatchNorm, activations and losses left out): G forward 0.2093 GFLOP and D forward
0.2076 GFLOP per image. A step counts, per image of the batch, G forward + backward (3 G),
D forward on real and fake + backward (6 D) and, in the G update, D forward + its backward
to the input only (2 D): 3 G + 8 D = 2.289 GFLOP per image.

Not modelled: gen_jax's EMA of the generator and its grad norms. Layout is PyTorch's native
NCHW (gen_jax uses NHWC); `--channels_last` tries the NHWC memory format instead (on 2
CPU cores, torch 2.13, one 3-step run each: 455 vs 519 ms per step, ~12% faster).

torch is NOT a gen_jax dependency: run this from a separate environment, e.g.

  python3.11 -m venv /path/to/torch-venv
  /path/to/torch-venv/bin/pip install torch numpy
  /path/to/torch-venv/bin/python benchmarks/torch_dcgan_reference.py [--batch 64] [--steps 50]
      [--warmup 5] [--threads N] [--channels_last]
"""

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from machine import description
from torch import nn

IMAGE_SIZE = 64
IMAGE_CHANNELS = 3
Z_DIM = 100
G_CHANNELS = (512, 256, 128, 64)
D_CHANNELS = (64, 128, 256, 512)


def batch_norm(channels: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class Generator(nn.Module):
  """z [B, Z_DIM] -> images [B, 3, 64, 64] in [-1, 1]."""

  def __init__(self) -> None:
    super().__init__()
    self.base = IMAGE_SIZE // 2 ** len(G_CHANNELS)
    self.dense = nn.Linear(Z_DIM, self.base * self.base * G_CHANNELS[0], bias=False)
    self.norm0 = batch_norm(G_CHANNELS[0])
    layers, c_in = [], G_CHANNELS[0]
    for c_out in G_CHANNELS[1:]:
      layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                 batch_norm(c_out), nn.ReLU()]
      c_in = c_out
    layers += [nn.ConvTranspose2d(c_in, IMAGE_CHANNELS, 4, stride=2, padding=1, bias=False),
               nn.Tanh()]
    self.ups = nn.Sequential(*layers)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self.dense(z).reshape(-1, G_CHANNELS[0], self.base, self.base)
    return self.ups(F.relu(self.norm0(x)))


class Discriminator(nn.Module):
  """images [B, 3, 64, 64] -> logits [B]."""

  def __init__(self) -> None:
    super().__init__()
    layers, c_in = [], IMAGE_CHANNELS
    for i, c_out in enumerate(D_CHANNELS):
      layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=False))
      if i:
        layers.append(batch_norm(c_out))
      layers.append(nn.LeakyReLU(0.2))
      c_in = c_out
    side = IMAGE_SIZE // 2 ** len(D_CHANNELS)
    self.convs = nn.Sequential(*layers)
    self.dense = nn.Linear(side * side * c_in, 1, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.dense(self.convs(x).flatten(1))[:, 0]


def init_weights(model: nn.Module) -> None:
  """Radford et al.'s N(0, 0.02) weights; BatchNorm scales N(1, 0.02), shifts 0."""
  for m in model.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1.0, 0.02)
      nn.init.zeros_(m.bias)


def forward_flops(model: nn.Module, x: torch.Tensor) -> float:
  """FLOPs of one example's forward pass (x: a batch of 1): 2 x the multiply-adds of every
  conv (output pixels x C_in x k x k per output channel), transposed conv (input pixels x
  C_out x k x k per input channel) and dense layer."""
  macs = [0]

  def hook(m: nn.Module, inputs: tuple[torch.Tensor], out: torch.Tensor) -> None:
    if isinstance(m, nn.Conv2d):
      macs[0] += out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    elif isinstance(m, nn.ConvTranspose2d):
      macs[0] += inputs[0][0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
    else:
      macs[0] += out[0].numel() * m.in_features

  hooks = [m.register_forward_hook(hook) for m in model.modules()
           if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
  was_training = model.training
  model.eval()
  with torch.no_grad():
    model(x)
  model.train(was_training)
  for h in hooks:
    h.remove()
  return 2.0 * macs[0]


def parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=64, help='Images per train step.')
  p.add_argument('--steps', type=int, default=50, help='Timed train steps.')
  p.add_argument('--warmup', type=int, default=5, help='Untimed train steps before timing.')
  p.add_argument('--threads', type=int, default=None, help='torch intra-op threads.')
  p.add_argument('--channels_last', action='store_true', help='Use NHWC memory format.')
  return p.parse_args()


def make_batch(batch: int, channels_last: bool) -> torch.Tensor:
  """One fixed batch of uniform noise images in [-1, 1], [batch, 3, 64, 64]."""
  gen = torch.Generator().manual_seed(0)
  x = 2.0 * torch.rand(batch, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, generator=gen) - 1.0
  return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def train_step(g: nn.Module, d: nn.Module, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, real: torch.Tensor) -> None:
  fake = g(torch.randn(real.shape[0], Z_DIM))
  # D update: non-saturating BCE-with-logits on real (label 1) and fake (label 0).
  d.requires_grad_(True)
  opt_d.zero_grad(set_to_none=True)
  d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
  d_loss.backward()
  opt_d.step()
  # G update through the updated D; D's parameters take no gradient.
  d.requires_grad_(False)
  opt_g.zero_grad(set_to_none=True)
  F.softplus(-d(fake)).mean().backward()
  opt_g.step()


def time_steps(g: nn.Module, d: nn.Module, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer, real: torch.Tensor, steps: int) -> float:
  """Seconds for `steps` train steps."""
  start = time.perf_counter()
  for _ in range(steps):
    train_step(g, d, opt_g, opt_d, real)
  return time.perf_counter() - start


def main() -> None:
  args = parse_args()
  print(description())
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  g, d = Generator(), Discriminator()
  init_weights(g)
  init_weights(d)
  g_params = sum(p.numel() for p in g.parameters())
  d_params = sum(p.numel() for p in d.parameters())
  g_flops = forward_flops(g, torch.zeros(1, Z_DIM))
  d_flops = forward_flops(d, torch.zeros(1, IMAGE_CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
  image_flops = 3 * g_flops + 8 * d_flops
  if args.channels_last:
    g, d = (m.to(memory_format=torch.channels_last) for m in (g, d))
  opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
  real = make_batch(args.batch, args.channels_last)
  time_steps(g, d, opt_g, opt_d, real, args.warmup)
  seconds = time_steps(g, d, opt_g, opt_d, real, args.steps)
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  step_ms = 1e3 * seconds / args.steps
  step_flops = image_flops * args.batch
  print(f'images/s {args.batch * args.steps / seconds:.1f}  step {step_ms:.2f} ms'
        f'  peak RSS {rss_mib:.0f} MiB  params G {g_params} D {d_params}'
        f'  threads {torch.get_num_threads()}'
        f'  fwd GFLOP/image G {g_flops / 1e9:.4f} D {d_flops / 1e9:.4f}'
        f'  GFLOP/step {step_flops / 1e9:.1f}'
        f'  GFLOP/s {step_flops * args.steps / seconds / 1e9:.1f}')


if __name__ == '__main__':
  main()
