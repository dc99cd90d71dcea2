"""fairseq ``--user-dir`` plugin: decaying fast weights (Mao, EMNLP 2022) for fairseq LMs.

Use as ``--user-dir <repo>/plugin/decayfw_fairseq``. fairseq imports every module in ``models/``
itself; ``modules/`` is imported here. The directory name is the top-level module name fairseq
registers, so it is globally unique (``decayfw_fairseq``) and must not be imported under another.
"""
from . import checkpoint_loading  # noqa: F401  (fairseq checkpoints under torch >= 2.6's torch.load)
from . import modules  # noqa: F401
from . import models  # noqa: F401
