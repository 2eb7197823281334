"""PyTorch CPU reference for the train-step throughput of configs/vae_mnist.py's conv VAE.

Builds the same network as gen_jax's `ConvVAE` with the vae_mnist config (3,331,329
parameters) and times full train steps (forward, backward, Adam update) on one fixed batch of
random binarized 28x28 images, so its images/s can be set beside
`benchmarks/train_throughput.py --config=configs/vae_mnist.py`:

* encoder: two 4x4 stride-2 convs (padding 1) to 32 and 64 channels, each + SiLU; flatten;
  Dense(512) + SiLU; Dense(2 * 32) -> mean, logvar;
* decoder: Dense(512) + SiLU; Dense(7 * 7 * 64) + SiLU, reshaped to 64 x 7 x 7; 4x4 stride-2
  transposed conv (padding 1) to 32 channels + SiLU; the same to 1 channel (Bernoulli logits);
* loss: per example, BCE-with-logits summed over pixels plus the analytic KL to N(0, I)
  summed over latents, averaged over the batch; z = mean + exp(0.5 logvar) * eps.

By default not modelled: gen_jax's EMA of the parameters (decay 0.999 in vae_mnist), its
grad / update / param norms (every step) and its learning-rate schedule. `--match_gen_jax`
adds the EMA (torch._foreach_lerp_) and the three norms (torch._foreach_norm), so both do the
same work per step. Layout is PyTorch's native
NCHW (gen_jax uses NHWC); `--channels_last` tries the NHWC memory format instead.

torch is NOT a gen_jax dependency: run this from a separate environment, e.g.

  python3.11 -m venv /path/to/torch-venv
  /path/to/torch-venv/bin/pip install torch numpy
  /path/to/torch-venv/bin/python benchmarks/torch_vae_reference.py [--batch 128] [--steps 100]
      [--warmup 5] [--threads N] [--channels_last] [--match_gen_jax]
"""

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from machine import description
from torch import nn

IMAGE_SIZE = 28
CHANNELS = (32, 64)
HIDDEN = 512
LATENT_DIM = 32
EMA_DECAY = 0.999  # vae_mnist's optim.ema_decay


class Encoder(nn.Module):
  """Images [B, 1, 28, 28] -> (mean, logvar), each [B, LATENT_DIM]."""

  def __init__(self) -> None:
    super().__init__()
    convs, c_in = [], 1
    for c_out in CHANNELS:
      convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
      c_in = c_out
    side = IMAGE_SIZE // 2 ** len(CHANNELS)
    self.convs = nn.Sequential(*convs)
    self.dense = nn.Sequential(nn.Flatten(), nn.Linear(side * side * c_in, HIDDEN), nn.SiLU(),
                               nn.Linear(HIDDEN, 2 * LATENT_DIM))

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, logvar = self.dense(self.convs(x)).chunk(2, dim=1)
    return mean, logvar


class Decoder(nn.Module):
  """Latents [B, LATENT_DIM] -> Bernoulli logits [B, 1, 28, 28]."""

  def __init__(self) -> None:
    super().__init__()
    self.side = IMAGE_SIZE // 2 ** len(CHANNELS)
    self.dense = nn.Sequential(nn.Linear(LATENT_DIM, HIDDEN), nn.SiLU(),
                               nn.Linear(HIDDEN, self.side * self.side * CHANNELS[-1]), nn.SiLU())
    ups, c_in = [], CHANNELS[-1]
    for c_out in reversed(CHANNELS[:-1]):
      ups += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
      c_in = c_out
    ups.append(nn.ConvTranspose2d(c_in, 1, 4, stride=2, padding=1))
    self.ups = nn.Sequential(*ups)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self.dense(z).reshape(-1, CHANNELS[-1], self.side, self.side)
    return self.ups(x)


class ConvVAE(nn.Module):
  """Returns the batch-mean negative ELBO (nats per example) of binary images `x`."""

  def __init__(self) -> None:
    super().__init__()
    self.encoder = Encoder()
    self.decoder = Decoder()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    mean, logvar = self.encoder(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    logits = self.decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').flatten(1).sum(1)
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(1)
    return (recon + kl).mean()


def parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--batch', type=int, default=128, help='Images per train step.')
  p.add_argument('--steps', type=int, default=100, help='Timed train steps.')
  p.add_argument('--warmup', type=int, default=5, help='Untimed train steps before timing.')
  p.add_argument('--threads', type=int, default=None, help='torch intra-op threads.')
  p.add_argument('--channels_last', action='store_true', help='Use NHWC memory format.')
  p.add_argument('--match_gen_jax', action='store_true',
                 help="Also do gen_jax's per-step EMA of the parameters and its three norms.")
  return p.parse_args()


def make_batch(batch: int, channels_last: bool) -> torch.Tensor:
  """One fixed batch of binarized uniform noise, [batch, 1, 28, 28] in {0, 1}."""
  gen = torch.Generator().manual_seed(0)
  x = torch.bernoulli(torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen), generator=gen)
  return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
  return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
               ema: list[torch.Tensor] | None) -> None:
  """One Adam step; with `ema`, also gen_jax's EMA update and grad / update / param norms."""
  opt.zero_grad(set_to_none=True)
  model(x).backward()
  if ema is None:
    opt.step()
    return
  params = list(model.parameters())
  with torch.no_grad():
    old = torch._foreach_mul(params, 1.0)
    opt.step()
    norms = [_global_norm([p.grad for p in params]),
             _global_norm(torch._foreach_sub(params, old)), _global_norm(params)]
    torch._foreach_lerp_(ema, params, 1.0 - EMA_DECAY)
  del norms  # computed, as gen_jax's metrics are, but not read back


def time_steps(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, steps: int,
               ema: list[torch.Tensor] | None) -> float:
  """Seconds for `steps` train steps."""
  start = time.perf_counter()
  for _ in range(steps):
    train_step(model, opt, x, ema)
  return time.perf_counter() - start


def main() -> None:
  args = parse_args()
  print(description())
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = ConvVAE()
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = make_batch(args.batch, args.channels_last)
  ema = [p.detach().clone() for p in model.parameters()] if args.match_gen_jax else None
  time_steps(model, opt, x, args.warmup, ema)
  seconds = time_steps(model, opt, x, args.steps, ema)
  params = sum(p.numel() for p in model.parameters())
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  step_ms = 1e3 * seconds / args.steps
  print(f'images/s {args.batch * args.steps / seconds:.1f}  step {step_ms:.2f} ms'
        f'  peak RSS {rss_mib:.0f} MiB  params {params}  threads {torch.get_num_threads()}'
        f'  match_gen_jax {args.match_gen_jax}')


if __name__ == '__main__':
  main()
