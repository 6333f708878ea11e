"""`evaluate` metric modules shipped with hf_ingrain, loadable offline by path (`evaluate` comes with the
`[metrics]` extra).

Example:

```python
>>> import evaluate
>>> from hf_ingrain.metrics import metric_path
>>> metric = evaluate.load(metric_path("ingrain_watermark"))
>>> metric.compute(predictions=runner_ups, references=ingrainer_choices, null_rate=0.19)
{'agreement': 0.34, 'p_value': 1.2e-28, 'verified': True, ...}
```
"""

import os

METRICS = ("ingrain_watermark",)


def metric_path(name: str = "ingrain_watermark") -> str:
    """The folder of a shipped metric module, for `evaluate.load(metric_path(name))`."""
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; the shipped metrics are {METRICS}.")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


__all__ = ["METRICS", "metric_path"]
