"""CLUB: contrastive log-ratio upper bound of mutual information (Cheng et al., ICML 2020)."""

from torch import nn


class CLUB(nn.Module):
    """Gaussian variational net ``q(y|x) = N(mu(x), diag(exp(logvar(x))))``.

    :meth:`log_likelihood` is maximised by its own optimiser step (learning ``q``);
    :meth:`forward` returns the MI upper bound that the main model minimises.

    Args:
        x_dim (int): Size of the conditioning vector (the modality-specific part).
        y_dim (int): Size of the predicted vector (the behaviour-aligned part).
        hidden (int): Hidden width of the two MLPs.
    """

    def __init__(self, x_dim, y_dim, hidden=128):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, y_dim), nn.Tanh())

    def log_likelihood(self, x, y):
        """Mean Gaussian log-likelihood of ``y`` given ``x`` (up to constants)."""
        mu, logvar = self.mu(x), self.logvar(x)
        return (-((mu - y) ** 2) / logvar.exp() - logvar).sum(dim=1).mean()

    def forward(self, x, y):
        """CLUB estimate: E[log q(y_i|x_i)] - E_i E_j[log q(y_j|x_i)].

        The inner mean over all pairs is computed in closed form,
        ``mean_j (y_j - mu_i)^2 = mean(y^2) - 2 mu_i mean(y) + mu_i^2``, so memory stays O(B d).
        """
        mu, logvar = self.mu(x), self.logvar(x)
        inv_var = 0.5 / logvar.exp()
        positive = -((mu - y) ** 2) * inv_var
        y_mean, y_sq_mean = y.mean(dim=0, keepdim=True), (y**2).mean(dim=0, keepdim=True)
        negative = -(y_sq_mean - 2 * mu * y_mean + mu**2) * inv_var
        return (positive.sum(dim=1) - negative.sum(dim=1)).mean()
