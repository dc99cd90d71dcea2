"""Import stubs for modules fairseq imports at start-up but a language-model run never uses.

``import fairseq`` imports every criterion and task module, and two of them import scikit-learn and SciPy at
the top (``criterions/sentence_prediction.py``, ``tasks/audio_classification.py``); sacrebleu, imported by
fairseq's scorers, imports lxml. Those wheels (~60 MB for Python 3.12) would not fit the GPU machine's
64 MiB carry limit, and nothing on the ``language_modeling`` / ``adaptive_loss`` / ``SequenceGenerator`` path
calls them. So, for each of them that is *not installed*, :func:`install` registers a stub module whose
attributes are functions raising ``ImportError`` when called. Installed packages are never shadowed, except the
names in ``$DECAYFW_FORCE_STUBS`` (comma-separated; used to test that the benchmark needs none of them).
``STUBBED`` lists what was stubbed; the benchmark prints it.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types

CANDIDATES = ("sklearn", "scipy", "lxml")
STUBBED = []


def _unavailable(qualname):
    def unavailable(*args, **kwargs):
        raise ImportError(f"{qualname} is not installed (an import stub from benchmarks/fairseq_offline.py)")
    unavailable.__name__ = unavailable.__qualname__ = qualname.rsplit(".", 1)[-1]
    return unavailable


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{self.__name__}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        module.__fairseq_offline_stub__ = True


def install():
    if any(isinstance(f, _StubFinder) for f in sys.meta_path):
        return STUBBED
    forced = [n for n in os.environ.get("DECAYFW_FORCE_STUBS", "").split(",") if n]
    for name in CANDIDATES:
        if name in forced or (name not in sys.modules and importlib.util.find_spec(name) is None):
            STUBBED.append(name)
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[mod]
    if STUBBED:
        sys.meta_path.insert(0, _StubFinder())
    return STUBBED


install()
