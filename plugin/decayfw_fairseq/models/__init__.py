# Importing the package registers the model and its archs, whether fairseq's --user-dir loader or
# a plain `import decayfw_fairseq` (tests, scripts) gets here first; fairseq's own import of the
# same module later finds it in sys.modules and registers nothing twice.
from . import decay_transformer_lm  # noqa: F401
