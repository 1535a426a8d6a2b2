"""``lightly-simmim throughput``: train-step images/s against the alternatives.

One table, measured in one process with the repetitions interleaved: this
package's SimMIM, Hugging Face's ``ViTForMaskedImageModeling`` on the identical ViT
(``pip install "lightly-simmim[bench]"``), this package's MAE and BYOL on the same
encoder, the data path alone and the whole ``pretrain`` loop; images/s (median and
range), the ratio to SimMIM, peak memory, FLOPs per image and the MFU against the
matmul peak measured in the same run.

- :mod:`.targets`: what to measure (config name, YAML file or encoder spec);
- :mod:`.rows`, :mod:`.hf`, :mod:`.data`, :mod:`.loop`: the rows;
- :mod:`.precision`: ``auto`` and autocast / loss scaling without a Trainer;
- :mod:`.timing`, :mod:`.memory`, :mod:`.flops`, :mod:`.machine`: the measuring;
- :mod:`.measure`: one measurement; :mod:`.report`: markdown and JSON.

Example::

    from lightly_simmim.throughput import ThroughputSettings, measure_throughput

    report = measure_throughput(ThroughputSettings("fashion_mnist_cpu"))
    print(report.to_markdown())
"""

from lightly_simmim.throughput.measure import (
    DEFAULT_ROWS,
    DEFAULT_TARGET,
    ROWS,
    ThroughputSettings,
    measure_throughput,
)
from lightly_simmim.throughput.report import RowResult, ThroughputReport

__all__ = [
    "DEFAULT_ROWS",
    "DEFAULT_TARGET",
    "ROWS",
    "RowResult",
    "ThroughputReport",
    "ThroughputSettings",
    "measure_throughput",
]
