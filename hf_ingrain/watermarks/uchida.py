r"""
The weight signature of Uchida et al. 2017, "Embedding Watermarks into Deep Neural Networks" (ICMR,
https://huggingface.co/papers/1701.04082): a white-box watermark in one layer's weights.

The key is a secret projection matrix `X` (`num_bits x D`, Gaussian) and `num_bits` random bits `b`. For a layer
with weights `W` of shape `(filters, ...)`, let `w = mean over filters of W`, flattened to `D` values. Training adds
`uchida_lambda · Σ_i BCE(sigmoid(X_i · w), b_i)` to the task loss ([`UchidaTrainer`]); the owner reads the bits
back as `X · w > 0` ([`extract_bits`]), from the weights (white-box access).

## The test
The statistic is the number of bits read back equal to `b` (the bit error rate is one minus its share). The bits
were drawn as fair coins independently of everything a model not derived from the key can depend on, so for such a
model each bit matches with probability exactly 1/2, independently: the binomial tail at 0.5 is an exact p-value.
With 64 bits the smallest p-value is `2^-64`; a model verifies at `alpha = 1e-6` when at most 11 bits are wrong.
"""

import logging

import torch

from ..losses import embedding_vector
from ..suspects import resolve_model
from ..trainer.uchida_trainer import signature_weight
from ..verification import DEFAULT_ALPHA, VerificationResult
from .base import SchemeKey, draw_seed_and_salt

logger = logging.getLogger(__name__)


def _default_parameter(model) -> str:
    """The last convolution's weight (the paper's choice of a middle conv layer, for small models), else the first
    weight matrix."""
    convolutions = [name for name, p in model.named_parameters() if name.endswith("weight") and p.ndim == 4]
    if convolutions:
        return convolutions[-1]
    matrices = [name for name, p in model.named_parameters() if name.endswith("weight") and p.ndim >= 2]
    if not matrices:
        raise ValueError("The model has no weight matrix to carry a signature; pass `parameter_name=`.")
    return matrices[0]


class UchidaKey(SchemeKey):
    r"""
    The owner's secret for a Uchida weight signature: the projection `X`, the bits `b` and the layer they live in.

    Args:
        projection (`torch.Tensor` of shape `(num_bits, D)`): the secret projection.
        bits (`torch.Tensor` of shape `(num_bits,)`): the signature bits (0 or 1).
        parameter_name (`str`): the name of the weight that carries them (e.g. `"conv2.weight"`).
        seed (`int`): seed of every random draw of the key.
        salt (`bytes`): 32 secret random bytes (for the commitment).

    Example:

    ```python
    >>> from hf_ingrain.watermarks import UchidaKey, UchidaConfig, UchidaTrainer, verify_uchida
    >>> key = UchidaKey.generate(model, num_bits=64, seed=0)
    >>> UchidaTrainer(model=model, args=UchidaConfig(output_dir="out"), key=key, train_dataset=splits["owner"]).train()
    >>> verify_uchida(model, key).details["bit_error_rate"]
    0.0
    ```
    """

    scheme = "uchida"

    def __init__(self, projection, bits, parameter_name, seed, salt):
        self.projection = projection.float()
        self.bits = bits.long()
        self.parameter_name = parameter_name
        self.seed = int(seed)
        self.salt = salt

    @classmethod
    def generate(
        cls, model, parameter_name: str | None = None, num_bits: int = 64, seed: int | None = None
    ) -> "UchidaKey":
        r"""
        Draws a projection and bits for one layer of `model`.

        Args:
            model (`nn.Module`): the model to watermark (only the layer's shape is read).
            parameter_name (`str`, *optional*): the weight to carry the signature; defaults to the last conv weight.
            num_bits (`int`, *optional*, defaults to 64): signature length; keep it below `D` (the paper: 256 bits in
                a layer with `D = 576`).
            seed (`int`, *optional*): seed of the key's draws (its salt always comes from the OS); leave unset for a
                real key (drawn from the OS): a key drawn from a known seed is not secret.
        """
        parameter_name = parameter_name or _default_parameter(model)
        weight = signature_weight(model, parameter_name)
        dimension = embedding_vector(weight).numel()
        if not 1 <= num_bits <= dimension:
            raise ValueError(
                f"`num_bits` must be between 1 and {dimension} (the size of {parameter_name!r} averaged over "
                "filters), "
                f"got {num_bits}; pick a wider layer with `parameter_name=`."
            )
        seed, generator, salt = draw_seed_and_salt(seed)
        projection = torch.randn((num_bits, dimension), generator=generator)
        bits = torch.randint(0, 2, (num_bits,), generator=generator)
        return cls(projection, bits, parameter_name, seed, salt)

    @property
    def num_bits(self) -> int:
        return len(self.bits)

    def _tensors(self):
        return {"projection": self.projection, "bits": self.bits}

    def _metadata(self):
        return {"parameter_name": self.parameter_name, "seed": self.seed, "num_bits": self.num_bits}

    @classmethod
    def _from_saved(cls, tensors, metadata, salt, models=None):
        return cls(tensors["projection"], tensors["bits"], metadata["parameter_name"], metadata["seed"], salt)

    def verify(self, model, alpha: float = DEFAULT_ALPHA, **kwargs):
        """[`verify_uchida`] with this key."""
        return verify_uchida(model, self, alpha=alpha)


@torch.no_grad()
def extract_bits(model, key: UchidaKey) -> torch.Tensor:
    """Reads the signature back from the weights: `X · w > 0`, as 0/1 bits."""
    weight = signature_weight(model, key.parameter_name).detach().cpu()
    if embedding_vector(weight).numel() != key.projection.shape[1]:
        raise ValueError(
            f"{key.parameter_name!r} has another shape than the key's layer; it is not the same architecture."
        )
    return (key.projection @ embedding_vector(weight) > 0).long()


def verify_uchida(model, key: UchidaKey, alpha: float = DEFAULT_ALPHA):
    r"""
    Reads the signature from `model`'s weights and tests it (see the module docstring).

    Args:
        model (`nn.Module` or `str`): the suspect's weights: a model or a local folder (white-box access).
        key ([`UchidaKey`]): the owner's key.
        alpha (`float`, *optional*, defaults to 1e-6): the significance level.

    Returns:
        [`VerificationResult`] with `protocol="uchida"`; `details["bit_error_rate"]`.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    model = resolve_model(model)
    if not isinstance(model, torch.nn.Module):
        raise ValueError("The Uchida signature lives in the weights: pass the model or its folder, not a callable.")
    matches = extract_bits(model, key) == key.bits
    details = {
        "scheme": "uchida",
        "parameter_name": key.parameter_name,
        "bit_error_rate": 1 - matches.float().mean().item(),
    }
    return VerificationResult.from_counts(int(matches.sum()), key.num_bits, 0.5, alpha, "uchida", details)
