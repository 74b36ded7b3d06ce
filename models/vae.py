"""Variational autoencoder: q_φ(z|x) = N(z; μ_φ(x), σ²_φ(x)), reparameterisation, ELBO."""
from __future__ import annotations

import torch
from torch import nn

from .base import Model, activation
from .params import VAEParams, tasks_of


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, I)) per sample: −½ Σ (1 + log σ² − μ² − σ²)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def mlp(sizes, act):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), activation(act)]
    return nn.Sequential(*layers)


class VAE(Model):
    """Gaussian decoder with unit variance, so the reconstruction term is ½‖x − x̂‖²."""

    Params = VAEParams
    tasks = tasks_of("vae")

    def __init__(self, input_shape, output_dim=0, task="generative", params=None, class_weight=None):
        super().__init__(input_shape, output_dim, task, params or VAEParams(), None)
        p = self.params
        d = self.in_features
        self.encoder = mlp([d, *p.hidden], p.activation)
        self.mu = nn.Linear(p.hidden[-1], p.latent_dim)
        self.logvar = nn.Linear(p.hidden[-1], p.latent_dim)
        self.decoder = nn.Sequential(mlp([p.latent_dim, *reversed(p.hidden)], p.activation),
                                     nn.Linear(p.hidden[0], d))

    def encode(self, x):
        h = self.encoder(x.reshape(x.shape[0], -1))
        return self.mu(h), self.logvar(h)  # (B, Z), (B, Z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decoder(z), mu, logvar

    def predict(self, x):
        """The reconstruction from the posterior mean."""
        return self(x)[0]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.params.latent_dim, generator=generator, device=self.mu.weight.device)
        return self.decoder(z)

    def loss(self, batch):
        x = batch["x"].reshape(batch["x"].shape[0], -1)
        recon, mu, logvar = self(x)
        rec = 0.5 * (recon - x).pow(2).sum(-1)  # (B,) −log p(x|z) up to a constant
        kl = kl_divergence(mu, logvar)  # (B,)
        loss = (rec + self.params.beta * kl).mean()
        return loss, {"loss": loss.detach(), "elbo": -(rec + kl).mean().detach(),
                      "recon_mse": (recon - x).pow(2).mean().detach()}
